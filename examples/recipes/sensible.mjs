// Recipe: deny WebSocket upgrades by throwing @fastify/sensible's httpErrors.
// A handshake handler that throws goes through Fastify's error handler, like
// any route: the error's statusCode (and headers) become the denial, with
// Fastify's error JSON as the body and Connection: close.
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import fastifySensible from '@fastify/sensible'
import fastifyWsGate, { accept } from 'fastify-ws-gate'

const members = new Map([['lobby', new Set(['alice', 'bob'])], ['staff', new Set(['carol'])]])

export async function build ({ draining = false, logger = false } = {}) {
  const app = Fastify({ logger })
  await app.register(fastifyWsGate)
  await app.register(fastifySensible)

  app.get('/rooms/:room', {
    websocket: true,
    // Who the user is comes from the query for brevity; see the jwt recipe.
    schema: { querystring: { type: 'object', properties: { user: { type: 'string' } } } },
    handshake: (request) => {
      const { httpErrors } = app
      if (draining) throw httpErrors.createError(503, 'Draining, try another node', { headers: { 'retry-after': '30' } })
      const room = members.get(request.params.room)
      if (room === undefined) throw httpErrors.notFound(`No such room: ${request.params.room}`)
      if (!room.has(request.query.user)) throw httpErrors.forbidden('Members only')
      return accept()
    }
  }, (socket, request) => {
    socket.send(`welcome to ${request.params.room}, ${request.query.user}`)
  })
  return app
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const app = await build({ logger: { level: 'warn' } })
  await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
  const base = `ws://127.0.0.1:${app.server.address().port}`
  console.log(`
Sensible recipe on ${base}/rooms/:room (lobby: alice, bob; staff: carol)

  member, 101:        node examples/client.mjs '${base}/rooms/lobby?user=alice'
  not a member, 403:  node examples/client.mjs '${base}/rooms/staff?user=alice'
  no such room, 404:  node examples/client.mjs '${base}/rooms/kitchen?user=alice'
`)
}
