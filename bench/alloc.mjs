// Bytes allocated per handshake: `npm run bench:alloc`.
//
// What a handshake allocates is garbage the process pays for later, in
// scavenges and in cache misses (a callgrind cache simulation put most of
// fastify-ws-gate's extra CPU per accept there, docs/benchmarks.md), and
// unlike CPU time it hardly depends on what else the machine is doing. Each
// server process loads bench/heap-sampler.mjs, which runs V8's sampling heap
// profiler over N handshakes, counting the objects already collected too; the
// bytes sampled over N are one handshake's allocation. Sessions start fresh
// processes; figures are medians over sessions. --top lists the functions
// whose allocations differ most from the baseline's (with --no-inlining the
// attribution is exact: with inlining, an inlined function's objects are
// charged to its caller).
//
//   npm run bench:alloc              accept and reject, gate vs @fastify/websocket, 3 sessions × 20,000 handshakes
//   flags: --sessions N --handshakes N --warmup N --interval BYTES (mean sampling interval)
//          --routes accept,reject --servers gate,fws,ws,floor --compare DIR --top N --no-inlining --out FILE
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { BASELINE, LOAD_CORE, selectRoutes, selectServers, start, startServer, statusProblem, writeResults } from './harness.mjs'
import { median } from './stats.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const { values: flags } = parseArgs({
  options: {
    sessions: { type: 'string', default: '3' },
    handshakes: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '5000' },
    interval: { type: 'string', default: '128' },
    routes: { type: 'string', default: 'accept,reject' },
    servers: { type: 'string', default: 'gate,fws' },
    compare: { type: 'string' },
    top: { type: 'string', default: '0' },
    'no-inlining': { type: 'boolean', default: false },
    out: { type: 'string' }
  }
})
const routes = selectRoutes(flags.routes)
const config = {
  sessions: Number(flags.sessions),
  handshakes: Number(flags.handshakes),
  warmup: Number(flags.warmup),
  interval: Number(flags.interval),
  routes: routes.map(([route]) => route),
  inlining: !flags['no-inlining']
}
const TOP = Number(flags.top)
const SERVERS = selectServers({ keys: flags.servers, compare: flags.compare })
const execArgv = ['--import', join(here, 'heap-sampler.mjs'), ...(config.inlining ? [] : ['--no-turbo-inlining'])]

const load = start('load.mjs', [], LOAD_CORE)
await load.ready
const problems = []
// samples[route][key]: one { perHandshake, functions } per session.
const samples = Object.fromEntries(routes.map(([route]) => [route, Object.fromEntries(SERVERS.map(({ key }) => [key, []]))]))

async function run (server, route, status, count) {
  const result = await load.ask({ cmd: 'run', port: server.port, path: `/${route}`, count, concurrency: 64 })
  const problem = statusProblem(`${server.key} /${route}`, result.statuses, status, count)
  if (problem !== undefined) problems.push(problem)
}

for (let session = 0; session < config.sessions; session++) {
  console.error(`session ${session + 1}/${config.sessions}`)
  for (const spec of SERVERS) {
    const server = await startServer(spec, execArgv)
    for (const [route, status] of routes) {
      await run(server, route, status, config.warmup)
      await server.proc.ask({ cmd: 'heapStart', interval: config.interval })
      await run(server, route, status, config.handshakes)
      const { total, functions } = await server.proc.ask({ cmd: 'heapStop' })
      samples[route][spec.key].push({ perHandshake: total / config.handshakes, functions: new Map(functions) })
    }
    server.proc.child.kill()
  }
}
load.child.send({ cmd: 'exit' })

// One function's bytes per handshake: the median over sessions.
const perFunction = (sessions, where) => median(sessions.map(({ functions }) => (functions.get(where) ?? 0) / config.handshakes))

const lines = [
  `Allocation: ${config.sessions} sessions × ${config.handshakes} handshakes per server and route (after ${config.warmup} to warm up), 64 in flight, sampled every ${config.interval} B on average${config.inlining ? '' : ', inlining off'}. Bytes per handshake: the median over sessions; × and + against ${BASELINE}.`,
  '',
  '| server | route | bytes/handshake | × | + bytes | sessions |',
  '|---|---|---:|---:|---:|---|'
]
const figures = {}
const tops = []
for (const [route] of routes) {
  const base = median(samples[route][BASELINE].map((sample) => sample.perHandshake))
  for (const { key, name } of SERVERS) {
    const sessions = samples[route][key]
    const bytes = median(sessions.map((sample) => sample.perHandshake))
    figures[`${key}/${route}`] = { bytes, ratio: bytes / base, extra: bytes - base, sessions: sessions.map((sample) => sample.perHandshake) }
    lines.push(`| ${name} | ${route} | ${Math.round(bytes)} | ${(bytes / base).toFixed(3)} | ${Math.round(bytes - base)} | ${sessions.map((sample) => Math.round(sample.perHandshake)).join(', ')} |`)
    if (TOP === 0 || key === BASELINE) continue
    const where = new Set(sessions.concat(samples[route][BASELINE]).flatMap(({ functions }) => [...functions.keys()]))
    const differences = [...where].map((w) => [w, perFunction(sessions, w), perFunction(samples[route][BASELINE], w)])
      .sort((a, b) => Math.abs(b[1] - b[2]) - Math.abs(a[1] - a[2])).slice(0, TOP)
    tops.push('', `${name}, ${route}: the ${TOP} functions whose own allocations differ most from ${BASELINE}'s (bytes per handshake)`, '',
      `| function | ${key} | ${BASELINE} | difference |`, '|---|---:|---:|---:|',
      ...differences.map(([w, mine, theirs]) => `| ${w} | ${mine.toFixed(0)} | ${theirs.toFixed(0)} | ${(mine - theirs).toFixed(0)} |`))
  }
}
lines.push(...tops)
if (problems.length > 0) lines.push('', 'Problems:', ...problems.map((p) => `- ${p}`))
console.log(lines.join('\n'))
const out = writeResults({ date: new Date().toISOString(), node: process.version, config, figures, problems }, flags.out, 'alloc-')
console.log(`\nwritten: ${out}`)
if (problems.length > 0) process.exitCode = 1
