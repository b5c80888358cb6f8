// Recipe: Prometheus metrics for WebSocket handshakes, with prom-client.
// fastify-ws-gate publishes every handshake outcome on the diagnostics channel
// `fastify-ws-gate:handshake`; count them by outcome, route and status, time
// them in a histogram, and serve the lot on GET /metrics.
import diagnostics from 'node:diagnostics_channel'
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import { Counter, Histogram, Registry } from 'prom-client'
import fastifyWsGate, { accept, HANDSHAKE_CHANNEL, reject } from 'fastify-ws-gate'

export async function build ({ logger = false } = {}) {
  const app = Fastify({ logger })
  await app.register(fastifyWsGate)

  const registry = new Registry()
  const handshakes = new Counter({
    name: 'ws_handshakes_total',
    help: 'WebSocket handshakes by outcome, route and status',
    labelNames: ['outcome', 'route', 'status'],
    registers: [registry]
  })
  const duration = new Histogram({
    name: 'ws_handshake_duration_seconds',
    help: 'Time from the upgrade\'s arrival to its outcome',
    labelNames: ['outcome', 'route'],
    buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10],
    registers: [registry]
  })
  // The channel is process-wide: one subscriber sees the handshakes of every
  // Fastify instance in the process. route and status are null for shed
  // upgrades, status for clients that left and for thrown errors.
  const observe = (event) => {
    const route = event.route ?? 'none'
    handshakes.inc({ outcome: event.outcome, route, status: event.status ?? 'none' })
    duration.observe({ outcome: event.outcome, route }, event.duration / 1000)
  }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, observe)
  app.addHook('onClose', async () => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, observe) })

  app.get('/metrics', async (request, reply) => {
    reply.type(registry.contentType)
    return registry.metrics()
  })

  app.get('/rooms/:room', {
    websocket: true,
    handshake: (request) => request.params.room === 'lobby' ? accept() : reject(404, 'No such room')
  }, (socket) => {
    socket.send('welcome')
  })
  return app
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const app = await build({ logger: { level: 'warn' } })
  await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
  const base = `127.0.0.1:${app.server.address().port}`
  console.log(`
Prometheus recipe on ws://${base}/rooms/:room (only lobby exists)

  accepted:      node examples/client.mjs 'ws://${base}/rooms/lobby'
  rejected 404:  node examples/client.mjs 'ws://${base}/rooms/kitchen'
  the metrics:   curl -s http://${base}/metrics
`)
}
