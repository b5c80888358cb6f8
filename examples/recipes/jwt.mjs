// Recipe: authenticate WebSocket upgrades with @fastify/jwt.
// Browsers cannot set headers on `new WebSocket()`, so the token comes as a
// subprotocol (`new WebSocket(url, ['chat.v1', 'bearer.' + jwt])`) or in the
// query string (`?access_token=`, RFC 6750 §2.3); other clients may also send
// `Authorization: Bearer`. No token or a bad one: 401 with WWW-Authenticate.
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import fastifyWsGate, { accept, reject } from 'fastify-ws-gate'

// Where a WebSocket client can put its token. Used by request.jwtVerify().
export function bearerToken (request) {
  const offered = (request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim())
  const fromProtocol = offered.find((p) => p.startsWith('bearer.'))
  if (fromProtocol !== undefined) return fromProtocol.slice('bearer.'.length)
  if (typeof request.query.access_token === 'string') return request.query.access_token
  return /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')?.[1]
}

const unauthorized = (reason, challenge) => reject(401, reason, { headers: { 'WWW-Authenticate': challenge } })

export async function build ({ secret = 'change-me-to-a-long-random-secret', logger = false } = {}) {
  const app = Fastify({ logger })
  await app.register(fastifyWsGate)
  await app.register(fastifyJwt, { secret, verify: { extractToken: bearerToken } })

  app.get('/chat', {
    websocket: true,
    handshake: async (request, { protocols }) => {
      if (bearerToken(request) === undefined) return unauthorized('Token required', 'Bearer realm="chat"')
      try {
        await request.jwtVerify() // sets request.user
      } catch {
        return unauthorized('Invalid token', 'Bearer realm="chat", error="invalid_token"')
      }
      // Select the application's subprotocol, never the token: the selected
      // one is sent back in the 101, and it must be one the client offered.
      return accept({ protocol: protocols.includes('chat.v1') ? 'chat.v1' : undefined })
    }
  }, (socket, request) => {
    socket.send(`hello ${request.user.sub}`)
  })
  return app
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const app = await build({ logger: { level: 'warn' } })
  await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
  const base = `ws://127.0.0.1:${app.server.address().port}/chat`
  const token = app.jwt.sign({ sub: 'alice' })
  console.log(`
JWT recipe on ${base}

  token as a subprotocol, 101 with chat.v1:  node examples/client.mjs '${base}' chat.v1 bearer.${token}
  token in the query string:                 node examples/client.mjs '${base}?access_token=${token}'
  no token, 401:                             node examples/client.mjs '${base}'
  bad token, 401 invalid_token:              node examples/client.mjs '${base}?access_token=nope'
`)
}
