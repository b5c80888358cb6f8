// Recipe: rate-limit WebSocket upgrades with @fastify/rate-limit.
// Its onRequest hook runs on upgrade requests like on any request, so every
// attempt counts, accepted or not; past the limit the client gets 429 with
// Retry-After and the x-ratelimit-* headers (and Connection: close), never a 101.
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import fastifyRateLimit from '@fastify/rate-limit'
import fastifyWsGate, { accept, reject } from 'fastify-ws-gate'

const rooms = new Set(['lobby', 'dev'])

export async function build ({ max = 100, roomMax = 3, logger = false } = {}) {
  const app = Fastify({ logger })
  await app.register(fastifyWsGate)
  await app.register(fastifyRateLimit, {
    max, // global: every route, per client IP
    timeWindow: '1 minute',
    // A client that keeps reconnecting while limited stays limited: each
    // refused attempt restarts its window (and Retry-After is the full window).
    continueExceeding: true
  })

  app.get('/feed', { websocket: true, handshake: () => accept() }, (socket) => {
    socket.send('feed')
  })

  // A stricter limit on one route: its own counter, merged with the global
  // options. The hook runs before the handshake handler, so refused
  // handshakes (the 404s) count too.
  app.get('/rooms/:room', {
    websocket: true,
    config: { rateLimit: { max: roomMax, timeWindow: '1 minute' } },
    handshake: (request) => rooms.has(request.params.room) ? accept() : reject(404, 'No such room')
  }, (socket, request) => {
    socket.send(`welcome to ${request.params.room}`)
  })
  return app
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const app = await build({ logger: { level: 'warn' } })
  await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
  const base = `ws://127.0.0.1:${app.server.address().port}`
  console.log(`
Rate-limit recipe on ${base} (/feed: 100 a minute, /rooms/:room: 3 a minute)

  run it 4 times, the 4th gets 429:  node examples/client.mjs '${base}/rooms/lobby'
  the raw 429:  curl -i -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' 'http://127.0.0.1:${app.server.address().port}/rooms/lobby'
`)
}
