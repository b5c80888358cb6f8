// Shared by every server under test: listen on loopback, then answer the
// harness over IPC with this process's own CPU time, and memory (after GC).
import { once } from 'node:events'

/** Handlers that never answer bump this, so the harness knows they are all pending. */
export const counters = { pending: 0 }

export const BODY = JSON.stringify({ statusCode: 401, error: 'Unauthorized', message: 'Invalid token' })

export async function serve (server) {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  process.on('message', (message) => {
    if (message.cmd === 'exit') process.exit(0)
    // CPU time alone, for the throughput rounds: no forced GC, whose cost
    // (which grows with the heap) would be charged to the handshakes.
    if (message.cmd === 'cpu') {
      process.send({ id: message.id, cpu: process.cpuUsage() })
      return
    }
    if (message.cmd !== 'stats') return
    global.gc()
    global.gc()
    const { rss, heapUsed } = process.memoryUsage()
    server.getConnections((err, connections) => {
      process.send({ id: message.id, cpu: process.cpuUsage(), rss, heapUsed, connections: err ? -1 : connections, pending: counters.pending })
    })
  })
  process.send({ ready: true, port: server.address().port })
}
