// The benchmark harness runs end to end with tiny counts. This checks that it
// works and reports every figure; it asserts nothing about speed.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

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

t.test('npm run bench -- --quick, with tiny counts, reports every server, route, figure and budget, with the interval of each CPU ratio', async (t) => {
  const out = resultFile(t, 'bench')
  const [code, stdout] = await runScript(['bench/run.mjs', '--quick', '--rounds', '6', '--handshakes', '40', '--concurrency', '8', '--memory', '40', '--out', out])
  t.equal(code, 0, 'the harness exits 0 (all statuses as expected)')
  t.match(stdout, /\| fastify-ws-gate \| accept \|/)
  t.match(stdout, /\| budget \| value \| 95% interval \| limit \| met \| clear \|/)
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
  // With 6 rounds the 95% interval of a median is the smallest and largest
  // of the 6 per-round ratios (1/64 below the median falls outside it).
  const cpu = (key: string) => result.throughput[key].rounds.map((sample: { cpuUs: number }) => sample.cpuUs) as number[]
  const range = (values: number[]) => [Math.min(...values), Math.max(...values)]
  const [accept, reject, rejectVsAccept, idle, pending] = result.budgets
  t.strictSame(accept.ci, range(cpu('gate/accept').map((us, i) => us / cpu('fws/accept')[i])))
  t.strictSame(reject.ci, range(cpu('gate/reject').map((us, i) => us / cpu('fws/reject')[i])))
  t.strictSame(rejectVsAccept.ci, range(cpu('gate/reject').map((us, i) => us / cpu('gate/accept')[i])))
  for (const budget of [accept, reject, rejectVsAccept]) {
    t.equal(budget.met, budget.value <= budget.limit, `${budget.name}: met is the median against the limit`)
    t.equal(budget.clear, budget.ci[1] <= budget.limit, `${budget.name}: clear is the interval against the limit`)
  }
  for (const budget of [idle, pending]) {
    t.equal(budget.ci, null, `${budget.name}: a single figure has no interval`)
    t.equal(budget.clear, budget.met)
  }
  t.strictSame(result.config, { rounds: 6, handshakes: 40, concurrency: 8, memory: 40, warmup: 50 })
})

t.test('npm run bench:paired, with tiny counts, reports each route\'s CPU ratios with intervals computed from its rounds', async (t) => {
  const out = resultFile(t, 'paired')
  const [code, stdout] = await runScript(['bench/paired.mjs', '--sessions', '2', '--rounds', '3', '--handshakes', '40', '--warmup', '20', '--concurrency', '8', '--out', out])
  t.equal(code, 0, 'the script exits 0 (all statuses as expected)')
  t.match(stdout, /\| fastify-ws-gate \| accept \| [\d.]+ \| [\d.]+ \| [\d.]+–[\d.]+ \|/)
  const result = JSON.parse(readFileSync(out, 'utf8'))
  t.strictSame(result.problems, [])
  t.strictSame(result.config, { sessions: 2, rounds: 3, handshakes: 40, concurrency: 8, routes: ['accept', 'reject'], warmup: 20 })
  t.strictSame(Object.keys(result.figures).sort(), ['fws/accept', 'fws/reject', 'gate/accept', 'gate/reject'])
  for (const route of ['accept', 'reject']) {
    const gate = result.figures[`gate/${route}`]
    const base = result.figures[`fws/${route}`]
    t.equal(gate.rounds.length, 6, `${route}: one sample per round of every session`)
    t.ok(gate.rounds.every((us: number) => Number.isFinite(us) && us > 0), `${route}: CPU per handshake is a positive number`)
    // Six rounds: the interval of the median is the smallest and largest ratio.
    const ratios = gate.rounds.map((us: number, i: number) => us / base.rounds[i]) as number[]
    t.strictSame(gate.ci, [Math.min(...ratios), Math.max(...ratios)], `${route}: the interval comes from the paired rounds`)
    const sorted = [...ratios].sort((a, b) => a - b)
    t.equal(gate.ratio, (sorted[2] + sorted[3]) / 2, `${route}: the ratio is the median of the paired rounds`)
    t.equal(base.ratio, 1)
  }
})

t.test('npm run bench:alloc, with tiny counts, reports bytes per handshake for each server and route, and the functions that differ most', async (t) => {
  const out = resultFile(t, 'alloc')
  const [code, stdout] = await runScript(['bench/alloc.mjs', '--sessions', '3', '--handshakes', '40', '--warmup', '10', '--interval', '64', '--top', '3', '--out', out])
  t.equal(code, 0, 'the script exits 0 (all statuses as expected)')
  const result = JSON.parse(readFileSync(out, 'utf8'))
  t.strictSame(result.problems, [])
  t.strictSame(result.config, { sessions: 3, handshakes: 40, warmup: 10, interval: 64, routes: ['accept', 'reject'], inlining: true })
  t.strictSame(Object.keys(result.figures).sort(), ['fws/accept', 'fws/reject', 'gate/accept', 'gate/reject'])
  for (const route of ['accept', 'reject']) {
    const gate = result.figures[`gate/${route}`]
    const base = result.figures[`fws/${route}`]
    t.equal(gate.sessions.length, 3, `${route}: one figure per session`)
    t.ok([...gate.sessions, ...base.sessions].every((bytes: number) => Number.isFinite(bytes) && bytes > 0), `${route}: bytes per handshake are positive`)
    const middle = (values: number[]) => [...values].sort((a, b) => a - b)[1]
    t.equal(gate.bytes, middle(gate.sessions), `${route}: the figure is the median of the sessions`)
    t.equal(gate.ratio, gate.bytes / base.bytes)
    t.equal(gate.extra, gate.bytes - base.bytes)
    t.equal(base.ratio, 1)
    t.match(stdout, new RegExp(`\\| fastify-ws-gate \\| ${route} \\| ${Math.round(gate.bytes)} \\| ${gate.ratio.toFixed(3)} \\| ${Math.round(gate.extra)} \\|`))
    t.match(stdout, new RegExp(`fastify-ws-gate, ${route}: the 3 functions whose own allocations differ most`))
  }
})
