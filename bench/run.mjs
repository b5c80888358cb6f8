// The handshake benchmark behind `npm run bench`. Every server under test and
// the load generator run in their own processes; servers are measured in
// interleaved rounds (A B C D, B C D A, ...) and medians reported, because the
// machine is shared and noisy. Prints a table and writes bench/results/*.json.
//
//   npm run bench                full run
//   npm run bench -- --quick     under a minute
//   flags: --rounds N --handshakes N --concurrency N --memory N --servers a,b --out FILE
//          --compare DIR   also fastify-ws-gate as built in another checkout (A/B work)
import { cpus, totalmem } from 'node:os'
import { parseArgs } from 'node:util'
import { BASELINE, LOAD_CORE, pin, ROUTES, selectServers, start, startServer, cpuTime, statusProblem, writeResults } from './harness.mjs'
import { formatInterval, median, medianWithInterval } from './stats.mjs'

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    handshakes: { type: 'string' },
    concurrency: { type: 'string' },
    memory: { type: 'string' },
    servers: { type: 'string' },
    compare: { type: 'string' },
    out: { type: 'string' }
  }
})
const preset = flags.quick
  ? { rounds: 2, handshakes: 2000, concurrency: 64, memory: 2000 }
  : { rounds: 20, handshakes: 3000, concurrency: 64, memory: 10000 }
const config = {
  rounds: Number(flags.rounds ?? preset.rounds),
  handshakes: Number(flags.handshakes ?? preset.handshakes),
  concurrency: Number(flags.concurrency ?? preset.concurrency),
  memory: Number(flags.memory ?? preset.memory)
}
config.warmup = Math.max(50, Math.floor(config.handshakes / 5))

const SERVERS = selectServers({ keys: flags.servers, compare: flags.compare })

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main () {
  const load = start('load.mjs', [], LOAD_CORE)
  await load.ready
  const servers = []
  for (const spec of SERVERS) servers.push(await startServer(spec))

  const problems = []
  async function measure (server, path, count, expected) {
    const before = await cpuTime(server)
    const result = await load.ask({ cmd: 'run', port: server.port, path, count, concurrency: config.concurrency })
    const after = await cpuTime(server)
    const problem = statusProblem(`${server.key} ${path}`, result.statuses, expected, count)
    if (problem !== undefined) problems.push(problem)
    return {
      rate: count / result.elapsedMs * 1000,
      p50: result.p50,
      p99: result.p99,
      cpuUs: (after - before) / count
    }
  }

  console.error(`warming up (${config.warmup} handshakes per server and route)...`)
  for (const server of servers) {
    for (const [route, status] of ROUTES) await measure(server, `/${route}`, config.warmup, status)
  }

  // Route by route, so that the measurements a ratio pairs (every server on
  // one route) follow each other: the machine's speed drifts within seconds.
  const samples = {}
  for (let round = 0; round < config.rounds; round++) {
    const order = servers.map((_, i) => servers[(i + round) % servers.length])
    console.error(`round ${round + 1}/${config.rounds}: ${order.map((server) => server.key).join(' ')}`)
    for (const [route, status] of ROUTES) {
      for (const server of order) {
        const key = `${server.key}/${route}`
        ;(samples[key] ??= []).push(await measure(server, `/${route}`, config.handshakes, status))
      }
    }
  }

  const throughput = {}
  for (const server of servers) {
    for (const [route] of ROUTES) {
      const list = samples[`${server.key}/${route}`]
      throughput[`${server.key}/${route}`] = {
        rate: median(list.map((s) => s.rate)),
        p50: median(list.map((s) => s.p50)),
        p99: median(list.map((s) => s.p99)),
        cpuUs: median(list.map((s) => s.cpuUs)),
        rounds: list
      }
    }
  }

  for (const server of servers) server.proc.child.kill()

  // Memory: N idle accepted connections, then N handshakes pending in a
  // handler (or hook) that never answers. Each in a fresh server process, so
  // that RSS is not the high-water mark of the throughput rounds; per
  // connection, against the same process's baseline after GC.
  const memory = {}
  for (const spec of SERVERS) {
    console.error(`memory: ${spec.key}`)
    const idle = await withFresh(spec, async (proc, port, base) => {
      const run = await load.ask({ cmd: 'run', port, path: '/accept', count: config.memory, concurrency: config.concurrency, keep: true })
      if (run.statuses[101] !== config.memory) problems.push(`${spec.key} idle: ${JSON.stringify(run.statuses)}`)
      return { base, after: await proc.ask({ cmd: 'stats' }) }
    })
    const pending = await withFresh(spec, async (proc, port, base) => {
      await load.ask({ cmd: 'run', port, path: '/pending', count: config.memory, concurrency: config.concurrency, keep: true, waitForHead: false })
      let after = await proc.ask({ cmd: 'stats' })
      for (let i = 0; i < 200 && after.pending < config.memory; i++) {
        await wait(50)
        after = await proc.ask({ cmd: 'stats' })
      }
      if (after.pending !== config.memory) problems.push(`${spec.key} pending: ${after.pending} of ${config.memory} reached the handler`)
      return { base, after }
    })
    memory[spec.key] = {
      idleRss: idle.after.rss,
      idleRssPerConnection: (idle.after.rss - idle.base.rss) / config.memory,
      idleHeapPerConnection: (idle.after.heapUsed - idle.base.heapUsed) / config.memory,
      pendingRss: pending.after.rss,
      pendingHeapPerHandshake: (pending.after.heapUsed - pending.base.heapUsed) / config.memory
    }
  }

  // A fresh server, warmed up with a few handshakes of each kind so that
  // lazily loaded code is not counted as per-connection memory.
  async function withFresh (spec, measure) {
    const { proc, port } = await startServer(spec)
    for (const [route] of ROUTES) await load.ask({ cmd: 'run', port, path: `/${route}`, count: 200, concurrency: 16 })
    const base = await proc.ask({ cmd: 'stats' })
    const result = await measure(proc, port, base)
    await load.ask({ cmd: 'release' })
    proc.child.kill()
    return result
  }

  load.child.send({ cmd: 'exit' })

  const report = buildReport(throughput, memory, problems)
  console.log(report.text)
  const out = writeResults({ ...report.json, config }, flags.out)
  console.log(`\nwritten: ${out}`)
  if (problems.length > 0) process.exitCode = 1
}

function buildReport (throughput, memory, problems) {
  // Rounds drift (the machine is shared): a ratio is taken within each round,
  // between measurements made minutes apart at most, and the median reported.
  const ratios = (key, against, field) => throughput[key].rounds.map((sample, i) => sample[field] / throughput[against].rounds[i][field])
  const paired = (key, route, field) => median(ratios(`${key}/${route}`, `${BASELINE}/${route}`, field))
  const lines = []
  const ratio = (value, against) => (value / against).toFixed(2)
  lines.push(`Handshakes: ${config.rounds} rounds × ${config.handshakes} per server and route, ${config.concurrency} in flight; medians. Ratios against ${BASELINE}: the median of the per-round ratios.${pin ? ' Servers pinned to core 0, load generator to core 1.' : ''}`)
  lines.push('')
  lines.push('| server | route | handshakes/s | × | p50 ms | p99 ms | CPU µs/handshake | × |')
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|')
  for (const server of SERVERS) {
    for (const [route] of ROUTES) {
      const t = throughput[`${server.key}/${route}`]
      t.rateRatio = paired(server.key, route, 'rate')
      t.cpuRatio = paired(server.key, route, 'cpuUs')
      lines.push(`| ${server.name} | ${route} | ${t.rate.toFixed(0)} | ${t.rateRatio.toFixed(2)} | ${t.p50.toFixed(2)} | ${t.p99.toFixed(2)} | ${t.cpuUs.toFixed(1)} | ${t.cpuRatio.toFixed(2)} |`)
    }
  }
  lines.push('')
  lines.push(`Memory: ${config.memory} idle accepted connections; ${config.memory} handshakes pending. Per connection, against the same process after GC.`)
  lines.push('')
  lines.push('| server | RSS with idle (MiB) | × | RSS B/idle conn | heap B/idle conn | RSS with pending (MiB) | heap B/pending handshake | × |')
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|')
  const mb = memory[BASELINE]
  for (const server of SERVERS) {
    const m = memory[server.key]
    lines.push(`| ${server.name} | ${(m.idleRss / 2 ** 20).toFixed(1)} | ${ratio(m.idleRss, mb.idleRss)} | ${m.idleRssPerConnection.toFixed(0)} | ${m.idleHeapPerConnection.toFixed(0)} | ${(m.pendingRss / 2 ** 20).toFixed(1)} | ${m.pendingHeapPerHandshake.toFixed(0)} | ${ratio(m.pendingHeapPerHandshake, mb.pendingHeapPerHandshake)} |`)
  }
  // The CPU budgets are medians of per-round ratios: each comes with the 95%
  // interval of that median, which says whether the run can tell.
  const budgets = [
    ['accept: CPU/handshake ≤ 1.05 × @fastify/websocket', medianWithInterval(ratios('gate/accept', `${BASELINE}/accept`, 'cpuUs')), 1.05],
    ['reject: CPU/handshake ≤ 1.00 × @fastify/websocket hook rejection', medianWithInterval(ratios('gate/reject', `${BASELINE}/reject`, 'cpuUs')), 1.00],
    ['reject below fastify-ws-gate\'s own accept', medianWithInterval(ratios('gate/reject', 'gate/accept', 'cpuUs')), 1.00],
    ['idle connections: RSS ≤ 1.05 × @fastify/websocket', { value: memory.gate.idleRss / mb.idleRss, ci: null }, 1.05],
    ['pending handshake: heap beyond Fastify\'s ≤ 4096 B', { value: memory.gate.pendingHeapPerHandshake - mb.pendingHeapPerHandshake, ci: null }, 4096]
  ].map(([name, { value, ci }, limit]) => ({ name, value, ci, limit, met: value <= limit, clear: ci === null ? value <= limit : ci[1] <= limit }))
  lines.push('')
  lines.push('Met: the median is within the limit. Clear: so is the whole 95% interval of the median (for the CPU budgets; single figures otherwise).')
  lines.push('')
  lines.push('| budget | value | 95% interval | limit | met | clear |')
  lines.push('|---|---:|---:|---:|---|---|')
  for (const b of budgets) {
    lines.push(`| ${b.name} | ${b.value.toFixed(2)} | ${formatInterval(b.ci, 2)} | ${b.limit} | ${b.met ? 'yes' : 'NO'} | ${b.clear ? 'yes' : 'no'} |`)
  }
  if (problems.length > 0) lines.push('', 'Problems:', ...problems.map((p) => `- ${p}`))
  return {
    text: lines.join('\n'),
    json: {
      date: new Date().toISOString(),
      machine: { cpu: cpus()[0]?.model, cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
      throughput,
      memory,
      budgets,
      problems
    }
  }
}

await main()
