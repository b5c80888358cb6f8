// WebSockets over HTTP/2 (RFC 8441) next to HTTP/1.1, behind
// `npm run bench:http2`: the same fastify-ws-gate server script (same routes,
// same handshake functions) started once with `Fastify({ http2: true })` (h2c,
// prior knowledge) and once as a plain HTTP/1.1 server, each in its own
// process pinned to core 0 (with taskset), the clients in another on core 1,
// as in bench/run.mjs.
//
// - Handshakes: h2 multiplexes its handshakes over a few sessions (8 × 8 in
//   flight by default), each one an extended CONNECT on its own stream;
//   HTTP/1.1 has as many in flight (64), one TCP connection per handshake,
//   driven by ws's own client ('h1-ws') and by bench/load.mjs's raw requests
//   ('h1-raw', the client `npm run bench` uses). An accepted stream is reset
//   (CANCEL) once :status 200 is in, as load.mjs destroys its socket once the
//   101 is in; a refusal is read to its end. Interleaved rounds, medians, the
//   server's own process.cpuUsage() per handshake.
// - Memory: 10,000 idle accepted WebSockets in a fresh server, over 10 h2
//   sessions × 1,000 streams, against 10,000 HTTP/1.1 connections (ws's
//   client); server RSS and heap after GC per WebSocket over the same
//   process's baseline, and the sockets each side holds.
//
//   npm run bench:http2               full run (about 2 minutes)
//   npm run bench:http2 -- --quick    a few seconds
//   flags: --rounds N --handshakes N --warmup N --sessions N --streams N
//          --concurrency N --memory N --memory-sessions N --out FILE
//
// The same file is the server (WS_GATE_BENCH_ROLE=server) and the client
// (WS_GATE_BENCH_ROLE=load) processes.
import { once } from 'node:events'
import { readdirSync, readlinkSync } from 'node:fs'
import http2 from 'node:http2'
import { cpus, totalmem } from 'node:os'
import { parseArgs } from 'node:util'

const role = process.env.WS_GATE_BENCH_ROLE
// A child whose driver is gone (interrupted) goes too.
if (role !== undefined) process.on('disconnect', () => process.exit(0))
if (role === 'server') await server(process.env.WS_GATE_BENCH_PROTO)
else if (role === 'load') await load()
else await main()

/** Sockets (TCP, and the IPC channel) this process holds open: the entries of /proc/self/fd that are sockets. */
function openSockets () {
  let sockets = 0
  let fds = 0
  for (const fd of readdirSync('/proc/self/fd')) {
    fds++
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')) sockets++
    } catch {}
  }
  return { fds, sockets }
}

// ---------------------------------------------------------------- the server

async function server (proto) {
  const { default: Fastify } = await import('fastify')
  const { BODY, counters, serve } = await import('./servers/common.mjs')
  const { default: fastifyWsGate, accept, reject } = await import(process.env.WS_GATE_MODULE ?? 'fastify-ws-gate')
  // The h2c server as Fastify makes it (http2.createServer(options.http)):
  // Node's defaults (no limit on concurrent streams, 10 MB of session memory)
  // unless WS_GATE_BENCH_H2 gives options as JSON.
  const h2options = JSON.parse(process.env.WS_GATE_BENCH_H2 ?? '{}')
  const app = proto === 'h2'
    ? Fastify({ logger: false, http2: true, http: h2options })
    : Fastify({ logger: false })
  await app.register(fastifyWsGate, { handshakeTimeout: 0 })
  // bench/servers/gate.mjs's routes, as they are.
  const denial = { headers: { 'WWW-Authenticate': 'Bearer', 'Content-Type': 'application/json; charset=utf-8' }, body: BODY }
  app.get('/accept', { websocket: true, handshake: async () => accept() }, () => {})
  app.get('/reject', { websocket: true, handshake: async () => reject(401, undefined, denial) }, () => {})
  app.get('/pending', { websocket: true, handshake: () => { counters.pending++; return new Promise(() => {}) } }, () => {})
  await app.ready()
  process.on('message', (message) => {
    if (message.cmd !== 'extra') return
    process.send({ id: message.id, ...openSockets(), clients: app.websocketServer.clients?.size ?? -1 })
  })
  await serve(app.server)
}

// ---------------------------------------------------------------- the clients

async function load () {
  const { default: WebSocket } = await import('ws')
  let held = []

  const at = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
  function summary (latencies, statuses, started) {
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6
    latencies.sort()
    return { count: latencies.length, elapsedMs, statuses, p50: at(latencies, 0.5), p99: at(latencies, 0.99) }
  }

  async function h2session (port, maxSessionMemory) {
    const session = http2.connect(`http://127.0.0.1:${port}`, maxSessionMemory === undefined ? {} : { maxSessionMemory })
    session.on('error', () => {})
    await once(session, 'remoteSettings')
    if (session.remoteSettings.enableConnectProtocol !== true) throw new Error('the server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL')
    return session
  }

  // One extended CONNECT; resolves [latency ms to the response head, status]
  // once the stream has closed (keep: once the head is in, the stream left open).
  function h2handshake (session, path, keep) {
    return new Promise((resolve) => {
      const started = process.hrtime.bigint()
      let result = [0, -1]
      const stream = session.request({
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':path': path,
        ':scheme': 'http',
        ':authority': '127.0.0.1',
        'sec-websocket-version': '13'
      }, { endStream: false })
      stream.on('error', () => {})
      stream.once('close', () => resolve(result))
      stream.once('response', (headers) => {
        const status = headers[':status']
        result = [Number(process.hrtime.bigint() - started) / 1e6, status]
        if (status === 200) {
          if (keep) {
            held.push(stream)
            stream.removeAllListeners('close')
            resolve(result)
          } else stream.close(http2.constants.NGHTTP2_CANCEL)
        } else stream.resume()
      })
    })
  }

  async function h2run ({ port, path, count, sessions, streams, keep = false, maxSessionMemory }) {
    const list = await Promise.all(Array.from({ length: sessions }, () => h2session(port, maxSessionMemory)))
    const latencies = new Float64Array(count)
    const statuses = {}
    let next = 0
    const started = process.hrtime.bigint()
    async function worker (session) {
      while (next < count) {
        const i = next++
        const [latency, status] = await h2handshake(session, path, keep)
        latencies[i] = latency
        statuses[status] = (statuses[status] ?? 0) + 1
      }
    }
    const workers = []
    for (const session of list) for (let i = 0; i < streams; i++) workers.push(worker(session))
    await Promise.all(workers)
    const result = summary(latencies, statuses, started)
    if (keep) held.push(...list.map((session) => ({ session })))
    else for (const session of list) session.close()
    return result
  }

  function wsHandshake (port, path, keep) {
    return new Promise((resolve) => {
      const started = process.hrtime.bigint()
      let result = [0, -1]
      const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { perMessageDeflate: false })
      const head = (status) => { result = [Number(process.hrtime.bigint() - started) / 1e6, status] }
      ws.on('error', () => {})
      ws.once('close', () => resolve(result))
      ws.once('open', () => {
        head(101)
        if (keep) {
          held.push(ws)
          ws.removeAllListeners('close')
          resolve(result)
        } else ws.terminate()
      })
      // With this listener ws leaves the refusal to it, and emits no 'close'.
      ws.once('unexpected-response', (req, res) => {
        head(res.statusCode)
        res.resume()
        res.once('end', () => {
          req.destroy()
          resolve(result)
        })
      })
    })
  }

  async function wsrun ({ port, path, count, concurrency, keep = false }) {
    const latencies = new Float64Array(count)
    const statuses = {}
    let next = 0
    const started = process.hrtime.bigint()
    async function worker () {
      while (next < count) {
        const i = next++
        const [latency, status] = await wsHandshake(port, path, keep)
        latencies[i] = latency
        statuses[status] = (statuses[status] ?? 0) + 1
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
    return summary(latencies, statuses, started)
  }

  process.on('message', async (message) => {
    if (message.cmd === 'h2') process.send({ id: message.id, ...await h2run(message) })
    else if (message.cmd === 'ws') process.send({ id: message.id, ...await wsrun(message) })
    else if (message.cmd === 'sockets') process.send({ id: message.id, ...openSockets() })
    else if (message.cmd === 'release') {
      for (const item of held) {
        if (item instanceof WebSocket) item.terminate()
        else if (item.session !== undefined) item.session.destroy()
        else item.destroy()
      }
      held = []
      await new Promise((resolve) => setTimeout(resolve, 200))
      process.send({ id: message.id })
    } else if (message.cmd === 'exit') process.exit(0)
  })
  process.send({ ready: true })
}

// ---------------------------------------------------------------- the driver

async function main () {
  const { LOAD_CORE, pin, ROUTES, start, startServer, cpuTime, statusProblem, writeResults } = await import('./harness.mjs')
  const { median, medianWithInterval, formatInterval } = await import('./stats.mjs')
  const { values: flags } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      handshakes: { type: 'string' },
      warmup: { type: 'string' },
      sessions: { type: 'string' },
      streams: { type: 'string' },
      concurrency: { type: 'string' },
      memory: { type: 'string' },
      'memory-sessions': { type: 'string' },
      out: { type: 'string' }
    }
  })
  const preset = flags.quick
    ? { rounds: 2, handshakes: 1000, warmup: 500, memory: 1000, memorySessions: 2 }
    : { rounds: 10, handshakes: 3000, warmup: 3000, memory: 10000, memorySessions: 10 }
  const config = {
    rounds: Number(flags.rounds ?? preset.rounds),
    handshakes: Number(flags.handshakes ?? preset.handshakes),
    warmup: Number(flags.warmup ?? preset.warmup),
    sessions: Number(flags.sessions ?? 8),
    streams: Number(flags.streams ?? 8),
    concurrency: Number(flags.concurrency ?? 64),
    memory: Number(flags.memory ?? preset.memory),
    memorySessions: Number(flags['memory-sessions'] ?? preset.memorySessions)
  }
  const ACCEPTED = { h2: 200, h1: 101 }
  const status = (proto, route) => route === 'accept' ? ACCEPTED[proto] : ROUTES.find(([r]) => r === route)[1]
  const spec = (proto) => ({ key: proto, file: 'http2.mjs', env: { WS_GATE_BENCH_ROLE: 'server', WS_GATE_BENCH_PROTO: proto } })

  const client = start('http2.mjs', [], LOAD_CORE, { WS_GATE_BENCH_ROLE: 'load' })
  const raw = start('load.mjs', [], LOAD_CORE)
  await client.ready
  await raw.ready
  const servers = { h2: await startServer(spec('h2')), h1: await startServer(spec('h1')) }

  // The ways a handshake is driven: which server, which client.
  const MODES = [
    { key: 'h2', name: `HTTP/2 h2c, ${config.sessions} sessions × ${config.streams} streams`, proto: 'h2' },
    { key: 'h1-ws', name: `HTTP/1.1, ws client, ${config.concurrency} connections`, proto: 'h1' },
    { key: 'h1-raw', name: `HTTP/1.1, raw (bench/load.mjs), ${config.concurrency} connections`, proto: 'h1' }
  ]
  const drive = (mode, port, path, count, extra = {}) => mode.key === 'h2'
    ? client.ask({ cmd: 'h2', port, path, count, sessions: config.sessions, streams: config.streams, ...extra })
    : mode.key === 'h1-ws'
      ? client.ask({ cmd: 'ws', port, path, count, concurrency: config.concurrency, ...extra })
      : raw.ask({ cmd: 'run', port, path, count, concurrency: config.concurrency, ...extra })

  const problems = []
  async function measure (mode, route, count) {
    const server = servers[mode.proto]
    const before = await cpuTime(server)
    const result = await drive(mode, server.port, `/${route}`, count)
    const after = await cpuTime(server)
    const problem = statusProblem(`${mode.key} /${route}`, result.statuses, status(mode.proto, route), count)
    if (problem !== undefined) problems.push(problem)
    return { rate: count / result.elapsedMs * 1000, p50: result.p50, p99: result.p99, cpuUs: (after - before) / count }
  }

  console.error(`warming up (${config.warmup} handshakes per client and route)...`)
  for (const mode of MODES) for (const [route] of ROUTES) await measure(mode, route, config.warmup)

  const samples = {}
  for (let round = 0; round < config.rounds; round++) {
    const order = MODES.map((_, i) => MODES[(i + round) % MODES.length])
    console.error(`round ${round + 1}/${config.rounds}: ${order.map((mode) => mode.key).join(' ')}`)
    for (const [route] of ROUTES) {
      for (const mode of order) (samples[`${mode.key}/${route}`] ??= []).push(await measure(mode, route, config.handshakes))
    }
  }
  for (const server of Object.values(servers)) server.proc.child.kill()

  const throughput = {}
  for (const mode of MODES) {
    for (const [route] of ROUTES) {
      const list = samples[`${mode.key}/${route}`]
      const against = samples[`h1-ws/${route}`]
      throughput[`${mode.key}/${route}`] = {
        rate: median(list.map((s) => s.rate)),
        p50: median(list.map((s) => s.p50)),
        p99: median(list.map((s) => s.p99)),
        cpuUs: median(list.map((s) => s.cpuUs)),
        // Against HTTP/1.1 with ws's client, within each round.
        cpuRatio: medianWithInterval(list.map((s, i) => s.cpuUs / against[i].cpuUs)),
        rateRatio: medianWithInterval(list.map((s, i) => s.rate / against[i].rate)),
        rounds: list
      }
    }
  }

  // Memory: idle accepted WebSockets in a fresh server, warmed up first, per
  // WebSocket against the same process after GC; and the sockets the client
  // process and the server process hold for them.
  const memory = {}
  const perSession = Math.ceil(config.memory / config.memorySessions)
  for (const proto of ['h2', 'h1']) {
    console.error(`memory: ${proto}, ${config.memory} idle WebSockets`)
    const server = await startServer(spec(proto))
    const mode = MODES.find((m) => m.proto === proto)
    for (const [route] of ROUTES) await drive(mode, server.port, `/${route}`, 400)
    await new Promise((resolve) => setTimeout(resolve, 200))
    const base = await server.proc.ask({ cmd: 'stats' })
    const baseSockets = await server.proc.ask({ cmd: 'extra' })
    const clientBase = await client.ask({ cmd: 'sockets' })
    const started = process.hrtime.bigint()
    const run = proto === 'h2'
      ? await client.ask({ cmd: 'h2', port: server.port, path: '/accept', count: config.memory, sessions: config.memorySessions, streams: perSession, keep: true })
      : await client.ask({ cmd: 'ws', port: server.port, path: '/accept', count: config.memory, concurrency: config.concurrency, keep: true })
    const openMs = Number(process.hrtime.bigint() - started) / 1e6
    if (run.statuses[ACCEPTED[proto]] !== config.memory) problems.push(`${proto} idle: ${JSON.stringify(run.statuses)}`)
    await new Promise((resolve) => setTimeout(resolve, 500))
    const after = await server.proc.ask({ cmd: 'stats' })
    const afterSockets = await server.proc.ask({ cmd: 'extra' })
    const clientAfter = await client.ask({ cmd: 'sockets' })
    memory[proto] = {
      websockets: config.memory,
      connections: proto === 'h2' ? config.memorySessions : config.memory,
      openMs,
      baseRss: base.rss,
      rss: after.rss,
      rssPerWebSocket: (after.rss - base.rss) / config.memory,
      heapPerWebSocket: (after.heapUsed - base.heapUsed) / config.memory,
      serverConnections: after.connections,
      serverSockets: afterSockets.sockets - baseSockets.sockets,
      serverClients: afterSockets.clients,
      clientSockets: clientAfter.sockets - clientBase.sockets,
      clientFds: clientAfter.fds
    }
    await client.ask({ cmd: 'release' })
    server.proc.child.kill()
  }
  client.child.send({ cmd: 'exit' })
  raw.child.send({ cmd: 'exit' })

  const lines = []
  lines.push(`Handshakes: ${config.rounds} rounds × ${config.handshakes} per client and route, after ${config.warmup}; 64 in flight (h2: ${config.sessions} sessions × ${config.streams} streams); medians. × : against HTTP/1.1 with ws's client, median of per-round ratios (95% interval).${pin ? ' Servers pinned to core 0, clients to core 1.' : ''}`)
  lines.push('')
  lines.push('| client | route | handshakes/s | × | p50 ms | p99 ms | server CPU µs/handshake | × (95% interval) |')
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|')
  for (const mode of MODES) {
    for (const [route] of ROUTES) {
      const t = throughput[`${mode.key}/${route}`]
      lines.push(`| ${mode.name} | ${route} | ${t.rate.toFixed(0)} | ${t.rateRatio.value.toFixed(2)} | ${t.p50.toFixed(2)} | ${t.p99.toFixed(2)} | ${t.cpuUs.toFixed(1)} | ${t.cpuRatio.value.toFixed(2)} (${formatInterval(t.cpuRatio.ci, 2)}) |`)
    }
  }
  lines.push('')
  lines.push(`Memory: ${config.memory} idle accepted WebSockets in a fresh server (h2: ${config.memorySessions} sessions × ${perSession} streams; HTTP/1.1: one connection each, ws's client). Per WebSocket, against the same process after GC.`)
  lines.push('')
  lines.push('| transport | TCP connections | server RSS base → with idle (MiB) | RSS B/WebSocket | heap B/WebSocket | server sockets | client sockets | time to open (s) |')
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|')
  for (const proto of ['h2', 'h1']) {
    const m = memory[proto]
    lines.push(`| ${proto === 'h2' ? 'HTTP/2 h2c' : 'HTTP/1.1'} | ${m.serverConnections} | ${(m.baseRss / 2 ** 20).toFixed(1)} → ${(m.rss / 2 ** 20).toFixed(1)} | ${m.rssPerWebSocket.toFixed(0)} | ${m.heapPerWebSocket.toFixed(0)} | ${m.serverSockets} | ${m.clientSockets} | ${(m.openMs / 1000).toFixed(1)} |`)
  }
  if (problems.length > 0) lines.push('', 'Problems:', ...problems.map((p) => `- ${p}`))
  console.log(lines.join('\n'))
  const out = writeResults({
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model, cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    config,
    throughput,
    memory,
    problems
  }, flags.out, 'http2-')
  console.log(`\nwritten: ${out}`)
  if (problems.length > 0) process.exitCode = 1
}
