// The benchmark harness runs end to end with tiny counts. This checks that it
// works and reports every figure; it asserts nothing about speed.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

t.test('npm run bench -- --quick, with tiny counts, reports every server, route, figure and budget', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ws-gate-bench-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const out = join(dir, 'result.json')
  const child = spawn(process.execPath, ['bench/run.mjs', '--quick', '--rounds', '1', '--handshakes', '40', '--concurrency', '8', '--memory', '40', '--out', out], {
    cwd: join(__dirname, '..'),
    env: { ...process.env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.resume()
  const timer = setTimeout(() => child.kill(), 90_000)
  const [code] = await once(child, 'exit')
  clearTimeout(timer)
  t.equal(code, 0, 'the harness exits 0 (all statuses as expected)')
  t.match(stdout, /\| fastify-ws-gate \| accept \|/)
  t.match(stdout, /\| budget \| value \| limit \| met \|/)
  const result = JSON.parse(readFileSync(out, 'utf8'))
  t.strictSame(result.problems, [])
  t.strictSame(Object.keys(result.throughput).sort(), [
    'floor/accept', 'floor/reject', 'fws/accept', 'fws/reject', 'gate/accept', 'gate/reject', 'ws/accept', 'ws/reject'
  ])
  for (const [key, figures] of Object.entries(result.throughput) as Array<[string, Record<string, number>]>) {
    for (const figure of ['rate', 'p50', 'p99', 'cpuUs']) t.ok(Number.isFinite(figures[figure]) && figures[figure] > 0, `${key} ${figure}`)
  }
  t.strictSame(Object.keys(result.memory).sort(), ['floor', 'fws', 'gate', 'ws'])
  for (const figures of Object.values(result.memory) as Array<Record<string, number>>) {
    t.strictSame(Object.keys(figures).sort(), ['idleHeapPerConnection', 'idleRss', 'idleRssPerConnection', 'pendingHeapPerHandshake', 'pendingRss'])
  }
  t.equal(result.budgets.length, 5)
  t.strictSame(result.config, { rounds: 1, handshakes: 40, concurrency: 8, memory: 40, warmup: 50 })
})
