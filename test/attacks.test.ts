// The attack harness (bench/attacks.mjs) runs end to end with --quick and two
// cheap attacks, and reports an entry for every server in every row. It
// asserts nothing about speed, nor what each server answers: those are the
// script's findings, written in docs/security.md.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

// runScript and resultFile are test/bench.test.ts's, which does not export
// them (a test file of its own; moving them to test/helpers.ts would share them).

// Runs a benchmark script to its end (killed after 90 s): its exit code and stdout.
async function runScript (args: string[]): Promise<[number | null, string]> {
  const child = spawn(process.execPath, args, {
    cwd: join(__dirname, '..'),
    env: { ...process.env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.resume()
  const timer = setTimeout(() => child.kill(), 90_000)
  const [code] = await once(child, 'exit') as [number | null]
  clearTimeout(timer)
  return [code, stdout]
}

// Where a script writes its JSON: a file in a directory of its own, removed after the test.
function resultFile (t: tap.Test, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ws-gate-${name}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'result.json')
}

const SERVERS = ['fws', 'gate', 'ws']

interface Figures {
  summary: string
  client: unknown
  cpuUsPerUpgrade?: number
  memory: { before: { rss: number, heapUsed: number } | null, after: { rss: number, heapUsed: number } | null }
  healthAfter: string
  errors: unknown[] | null
  exit: unknown
}
interface Row { attack: string, case: string, count: number, results: Record<string, Figures> }

t.test('node bench/attacks.mjs --quick --attack malformed,protocols reports every server in every row, with the table', async (t) => {
  const out = resultFile(t, 'attacks')
  const [code, stdout] = await runScript(['bench/attacks.mjs', '--quick', '--attack', 'malformed,protocols', '--out', out])
  t.equal(code, 0, 'the script exits 0')
  t.match(stdout, /\| attack \| case \| count \| fastify-ws-gate \| @fastify\/websocket alone \| ws alone \|/)
  const result = JSON.parse(readFileSync(out, 'utf8'))
  t.strictSame(result.attacks, ['malformed', 'protocols'])
  t.equal(result.quick, true)
  t.strictSame(result.servers.map((server: { key: string }) => server.key).sort(), SERVERS)
  const rows = result.rows as Row[]
  t.strictSame(rows.map((row) => row.attack), [...Array(7).fill('malformed'), 'protocols', 'protocols'], 'seven malformed requests, two token counts')
  for (const row of rows) {
    t.strictSame(Object.keys(row.results).sort(), SERVERS, `${row.case}: one entry per server`)
    t.ok(Number.isInteger(row.count) && row.count > 0, `${row.case}: a count`)
    t.match(stdout, `| ${row.attack} | ${row.case} | ${row.count} |`, `${row.case}: in the table`)
    for (const [key, figures] of Object.entries(row.results)) {
      const what = `${row.case}, ${key}`
      t.equal(typeof figures.summary, 'string', `${what}: a summary`)
      t.ok(figures.memory.before !== null && figures.memory.before.rss > 0 && figures.memory.before.heapUsed > 0, `${what}: memory before`)
      t.ok(figures.memory.after !== null && figures.memory.after.rss > 0 && figures.memory.after.heapUsed > 0, `${what}: memory after`)
      t.equal(typeof figures.healthAfter, 'string', `${what}: a normal handshake tried afterwards`)
      t.ok(Array.isArray(figures.errors), `${what}: the error-level log lines, read`)
      t.equal(figures.exit, null, `${what}: the server process did not exit`)
      if (row.attack === 'malformed') {
        t.equal(typeof figures.client, 'string', `${what}: what the client got`)
      } else {
        const client = figures.client as Record<string, number>
        t.equal(Object.values(client).reduce((a, b) => a + b, 0), row.count, `${what}: one outcome per upgrade`)
        t.ok(Number.isFinite(figures.cpuUsPerUpgrade) && (figures.cpuUsPerUpgrade as number) > 0, `${what}: CPU per upgrade`)
      }
    }
  }
})
