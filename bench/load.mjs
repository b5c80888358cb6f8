// The load generator, in its own process: raw TCP, one upgrade request per
// connection, a fixed number in flight, so that it measures handshakes and
// not a client library. Driven by the harness over IPC.
import { connect } from 'node:net'

const request = (path) => Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')

const END = Buffer.from('\r\n\r\n')
let held = []

// One handshake: resolves with [latency in ms, status], when the response head
// is in; `keep` leaves the socket open (for the memory figures).
function handshake (port, bytes, keep, waitForHead) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint()
    const socket = connect(port, '127.0.0.1')
    let seen = Buffer.alloc(0)
    const finish = (status) => {
      socket.removeAllListeners('data')
      if (keep) held.push(socket)
      else socket.destroy()
      resolve([Number(process.hrtime.bigint() - started) / 1e6, status])
    }
    socket.on('error', () => finish(-1))
    socket.on('connect', () => {
      socket.write(bytes)
      if (!waitForHead) finish(0)
    })
    if (!waitForHead) return
    socket.on('data', (chunk) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk])
      if (seen.indexOf(END) !== -1) finish(Number(seen.subarray(9, 12).toString()))
    })
  })
}

async function run ({ port, path, count, concurrency, keep = false, waitForHead = true }) {
  const bytes = request(path)
  const latencies = new Float64Array(count)
  const statuses = {}
  let next = 0
  const started = process.hrtime.bigint()
  async function worker () {
    while (next < count) {
      const i = next++
      const [latency, status] = await handshake(port, bytes, keep, waitForHead)
      latencies[i] = latency
      statuses[status] = (statuses[status] ?? 0) + 1
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6
  latencies.sort()
  const at = (q) => latencies[Math.min(count - 1, Math.floor(q * count))]
  return { count, elapsedMs, statuses, p50: at(0.5), p99: at(0.99) }
}

process.on('message', async (message) => {
  if (message.cmd === 'run') {
    process.send({ id: message.id, ...await run(message) })
  } else if (message.cmd === 'runAll') {
    // Every server at once, each with its own count and its own in-flight
    // connections (bench/paired.mjs).
    const results = await Promise.all(message.ports.map((port) => run({ ...message, port })))
    process.send({ id: message.id, results })
  } else if (message.cmd === 'release') {
    for (const socket of held) socket.destroy()
    held = []
    process.send({ id: message.id })
  } else if (message.cmd === 'exit') {
    process.exit(0)
  }
})
process.send({ ready: true })
