// The application every end-to-end test talks to: one chat handshake, mounted
// three times with each rejectVia, on a real server on 127.0.0.1, port 0.
//
//   /http/rooms/:room    rejectVia 'http'
//   /close/rooms/:room   rejectVia 'close-frame'
//   /auto/rooms/:room    rejectVia 'auto'
//
// token=secret is accepted; anything else gets 401 (WWW-Authenticate, and a
// Set-Cookie that clears the token). Room "busy": 429 with Retry-After.
// Room "slow": the decision never comes (503 from the handshake timeout).
// Unknown room: 404. Accepted: chat.v2 if offered (and nothing else, so that
// offering only chat.v1 shows what each client does with a 101 that selects
// no subprotocol), Set-Cookie room=..., then a welcome message tagged with the
// instance id, and an echo of each message. The origins http://evil.example
// and http://localhost:<any port> (another origin for a page in the browser)
// are refused by allowedOrigins, which stays HTTP 403 in every mode.
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyWsGate, { accept, reject, type HandshakeHandler } from '../../lib/index.js'

export type Via = 'http' | 'close-frame' | 'auto'

export const PATHS: Record<Via, string> = { http: '/http/rooms/', 'close-frame': '/close/rooms/', auto: '/auto/rooms/' }

export const TOKEN = 'secret'

export const EVIL = 'http://evil.example'

export interface E2eApp {
  app: FastifyInstance
  port: number
  instance: string
}

interface Teardown { teardown (fn: () => unknown): void }

export async function startApp (t: Teardown, instance = 'a', handshakeTimeout = 500): Promise<E2eApp> {
  const app = Fastify({ logger: false })
  const allowedOrigins = (origin: string): boolean => origin !== EVIL && !origin.startsWith('http://localhost:')
  await app.register(fastifyWsGate, { handshakeTimeout, allowedOrigins })

  const handshake: HandshakeHandler = async (request, { protocols, signal }) => {
    const { token } = request.query as { token?: string }
    const { room } = request.params as { room: string }
    if (token !== TOKEN) {
      return reject(401, 'Invalid token', {
        headers: [['WWW-Authenticate', 'Bearer realm="e2e"'], ['Set-Cookie', 'token=; Max-Age=0; Path=/']]
      })
    }
    if (room === 'busy') return reject(429, 'Too many connections', { headers: { 'Retry-After': '30' } })
    if (room === 'slow') {
      await new Promise((resolve) => signal.addEventListener('abort', resolve))
    } else if (room !== 'lobby') {
      return reject(404, `No such room: ${room}`)
    }
    return accept({
      protocol: protocols.includes('chat.v2') ? 'chat.v2' : undefined,
      headers: { 'Set-Cookie': `room=${room}; Path=/; HttpOnly` }
    })
  }

  for (const via of Object.keys(PATHS) as Via[]) {
    // Spread, so that this compiles whether or not the route types know rejectVia.
    const options = { rejectVia: via }
    app.get(`${PATHS[via]}:room`, { websocket: true, handshake, ...options }, (socket, request) => {
      const { room } = request.params as { room: string }
      socket.send(`welcome to ${room} from ${instance} (protocol: ${socket.protocol || 'none'})`)
      socket.on('message', (data) => socket.send(`echo: ${String(data)}`))
    })
  }

  // A page for the browser to run in (same host as the sockets, so cookies apply).
  app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send('<!doctype html><title>e2e</title>'))

  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { app, port: address.port, instance }
}
