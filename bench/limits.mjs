// What a connection limit costs an accepted handshake: the same route with no
// limit, with the in-process store, and with the Redis store (a redis-server
// started here, on this machine), each server in its own process. For each:
// server CPU per handshake (process.cpuUsage across the measured window),
// latency per handshake as the client sees it (open to 'open'), and, for
// Redis, commands per handshake (INFO commandstats before and after). Each
// handshake is one WebSocket opened, then closed (the close releases the lease).
//
//   npm run bench:limits        3 rounds × 4,000 handshakes per server, 32 in flight, after 2,000 to warm up
//   flags: --rounds N --handshakes N --warmup N --concurrency N
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'

const here = dirname(fileURLToPath(import.meta.url))
const { values: flags } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    handshakes: { type: 'string', default: '4000' },
    warmup: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '32' }
  }
})
const ROUNDS = Number(flags.rounds)
const HANDSHAKES = Number(flags.handshakes)
const WARMUP = Number(flags.warmup)
const CONCURRENCY = Number(flags.concurrency)

async function freePort () {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  return port
}

async function startRedis () {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'))
  const child = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
  for (let i = 0; i < 100; i++) {
    try {
      await new Promise((resolve, reject) => { const s = connect(port, '127.0.0.1', () => { s.end(); resolve() }); s.on('error', reject) })
      break
    } catch { await new Promise((resolve) => setTimeout(resolve, 50)) }
  }
  return { port, stop: () => { child.kill(); rmSync(dir, { recursive: true, force: true }) } }
}

// INFO commandstats over a fresh connection (one RESP bulk reply): calls per command, INFO itself left out.
async function redisCommands (port) {
  const socket = connect(port, '127.0.0.1')
  socket.write('*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n')
  let reply = Buffer.alloc(0)
  for await (const chunk of socket) {
    reply = Buffer.concat([reply, chunk])
    const end = reply.indexOf('\r\n')
    if (end !== -1 && reply.length >= end + 2 + Number(reply.subarray(1, end).toString()) + 2) break
  }
  socket.destroy()
  const calls = [...reply.toString().matchAll(/cmdstat_(\w+):calls=(\d+)/g)].filter(([, name]) => name !== 'info')
  return Object.fromEntries(calls.map(([, name, n]) => [name, Number(n)]))
}

async function startServer (kind, redisPort) {
  const child = spawn(process.execPath, [join(here, 'servers', 'limits.mjs')], {
    env: { ...process.env, LIMIT_STORE: kind, ...(redisPort !== undefined && { REDIS_URL: `redis://127.0.0.1:${redisPort}` }) },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc']
  })
  const [line] = await once(createInterface({ input: child.stdout }), 'line')
  const { port } = JSON.parse(line)
  const cpu = async () => { child.send('cpu'); const [usage] = await once(child, 'message'); return usage }
  return { port, cpu, stop: () => child.kill() }
}

async function handshakes (port, count, latencies) {
  let next = 0
  const one = () => new Promise((resolve, reject) => {
    const i = next++
    const started = performance.now()
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { 'x-user': `u${i % 1000}` } })
    ws.once('open', () => {
      latencies?.push(performance.now() - started)
      ws.close()
    })
    ws.once('close', resolve)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)))
    ws.once('error', reject)
  })
  const worker = async () => {
    for (let i = 0; i < count; i++) {
      if (next >= count) return
      await one()
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
const redis = await startRedis()
const rows = []
for (const kind of ['none', 'memory', 'redis']) {
  const server = await startServer(kind, kind === 'redis' ? redis.port : undefined)
  await handshakes(server.port, WARMUP)
  const perRound = []
  const latencies = []
  let commands
  for (let round = 0; round < ROUNDS; round++) {
    const before = kind === 'redis' ? await redisCommands(redis.port) : undefined
    const cpu0 = await server.cpu()
    await handshakes(server.port, HANDSHAKES, latencies)
    const cpu1 = await server.cpu()
    perRound.push((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / HANDSHAKES)
    if (before !== undefined) {
      // Releases are sent as each connection closes; let the last ones land.
      await new Promise((resolve) => setTimeout(resolve, 200))
      const after = await redisCommands(redis.port)
      commands = Object.fromEntries(Object.keys(after).map((name) => [name, ((after[name] - (before[name] ?? 0)) / HANDSHAKES)]).filter(([, n]) => n > 0.001))
    }
  }
  server.stop()
  latencies.sort((a, b) => a - b)
  perRound.sort((a, b) => a - b)
  rows.push({ kind, cpu: perRound[Math.floor(perRound.length / 2)], rounds: perRound, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), commands })
  process.stderr.write(`${kind} done\n`)
}
redis.stop()
console.log(`Connection limits: ${ROUNDS} rounds × ${HANDSHAKES} handshakes per server (after ${WARMUP}), ${CONCURRENCY} in flight, 1,000 users, each handshake opened then closed.\n`)
console.log('| store | server CPU µs/handshake (median round) | rounds | latency p50 ms | p99 ms | Redis commands per handshake |')
console.log('|---|---:|---|---:|---:|---|')
for (const row of rows) {
  const commands = row.commands === undefined ? '—' : Object.entries(row.commands).map(([name, n]) => `${name} ${n.toFixed(2)}`).join(', ')
  console.log(`| ${row.kind} | ${row.cpu.toFixed(1)} | ${row.rounds.map((r) => r.toFixed(1)).join(', ')} | ${row.p50.toFixed(2)} | ${row.p99.toFixed(2)} | ${commands} |`)
}
