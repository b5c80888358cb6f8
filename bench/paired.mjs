// CPU per handshake with the servers loaded at the same time: `npm run bench:paired`.
//
// npm run bench measures one server at a time, and the machine's speed
// drifts between two runs seconds apart: single rounds' ratios range from 0.6
// to 1.7 there. Here fastify-ws-gate and @fastify/websocket (and any
// --compare build) share core 0 and are driven at once, each with its own 64
// connections in flight, so that a round's ratio compares CPU time spent in
// the same seconds. A process also keeps its own small bias for its lifetime
// (where its code and heap landed), so each session starts fresh processes
// and runs a few rounds; ratios are the median of all rounds, with the 95%
// interval of that median. Prints a table and writes bench/results/paired-*.json.
//
// Each session first warms its servers up with 5,000 handshakes per route:
// with 600, a session's first round still ran at about twice the CPU per
// handshake of its later rounds (the optimising compiler at work), a third of
// the rounds measuring warm-up rather than the handshake.
//
//   npm run bench:paired                         8 sessions × 3 rounds × 3,000 handshakes per server and route
//   flags: --sessions N --rounds N (per session) --handshakes N --warmup N (per session, route and server)
//          --concurrency N (per server) --routes accept,reject --compare DIR --out FILE
import { parseArgs } from 'node:util'
import { BASELINE, cpuTime, LOAD_CORE, pin, selectRoutes, selectServers, start, startServer, statusProblem, writeResults } from './harness.mjs'
import { formatInterval, median, medianWithInterval } from './stats.mjs'
const { values: flags } = parseArgs({
  options: {
    sessions: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    handshakes: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '5000' },
    concurrency: { type: 'string', default: '64' },
    routes: { type: 'string', default: 'accept,reject' },
    compare: { type: 'string' },
    out: { type: 'string' }
  }
})
const routes = selectRoutes(flags.routes)
const config = {
  sessions: Number(flags.sessions),
  rounds: Number(flags.rounds),
  handshakes: Number(flags.handshakes),
  warmup: Number(flags.warmup),
  concurrency: Number(flags.concurrency),
  routes: routes.map(([route]) => route)
}
// Only the servers the budgets compare: each one more on the core adds noise.
const SERVERS = selectServers({ keys: 'gate,fws', compare: flags.compare })

const load = start('load.mjs', [], LOAD_CORE)
await load.ready
const problems = []
// samples[route][key]: CPU µs per handshake, one per round, in round order.
const samples = Object.fromEntries(routes.map(([route]) => [route, Object.fromEntries(SERVERS.map(({ key }) => [key, []]))]))

async function together (servers, route, status, count) {
  const before = []
  for (const server of servers) before.push(await cpuTime(server))
  const { results } = await load.ask({ cmd: 'runAll', ports: servers.map((server) => server.port), path: `/${route}`, count, concurrency: config.concurrency })
  const cpuUs = []
  for (const [i, server] of servers.entries()) {
    cpuUs.push((await cpuTime(server) - before[i]) / count)
    const problem = statusProblem(`${server.key} /${route}`, results[i].statuses, status, count)
    if (problem !== undefined) problems.push(problem)
  }
  return cpuUs
}

for (let session = 0; session < config.sessions; session++) {
  // Started in a rotating order, in case the order matters to where they land.
  const servers = []
  for (let i = 0; i < SERVERS.length; i++) {
    const at = (i + session) % SERVERS.length
    servers[at] = await startServer(SERVERS[at])
  }
  console.error(`session ${session + 1}/${config.sessions}`)
  for (const [route, status] of routes) await together(servers, route, status, config.warmup)
  for (let round = 0; round < config.rounds; round++) {
    for (const [route, status] of routes) {
      const cpuUs = await together(servers, route, status, config.handshakes)
      for (const [i, { key }] of servers.entries()) samples[route][key].push(cpuUs[i])
    }
  }
  for (const server of servers) server.proc.child.kill()
}
load.child.send({ cmd: 'exit' })

const lines = [
  `Paired: ${config.sessions} sessions × ${config.rounds} rounds × ${config.handshakes} handshakes per server and route, every server at once, ${config.concurrency} in flight each.${pin ? ' Servers on core 0, load generator on core 1.' : ''} Ratio: the median of the per-round ratios against ${BASELINE}, with its 95% interval.`,
  '',
  '| server | route | CPU µs/handshake | × | 95% interval |',
  '|---|---|---:|---:|---:|'
]
const figures = {}
for (const [route] of routes) {
  const base = samples[route][BASELINE]
  for (const { key, name } of SERVERS) {
    const cpu = samples[route][key]
    const { value: ratio, ci } = medianWithInterval(cpu.map((us, i) => us / base[i]))
    figures[`${key}/${route}`] = { cpuUs: median(cpu), ratio, ci, rounds: cpu }
    lines.push(`| ${name} | ${route} | ${median(cpu).toFixed(1)} | ${ratio.toFixed(3)} | ${formatInterval(ci, 3)} |`)
  }
}
if (problems.length > 0) lines.push('', 'Problems:', ...problems.map((p) => `- ${p}`))
console.log(lines.join('\n'))
const out = writeResults({ date: new Date().toISOString(), node: process.version, config, figures, problems }, flags.out, 'paired-')
console.log(`\nwritten: ${out}`)
if (problems.length > 0) process.exitCode = 1
