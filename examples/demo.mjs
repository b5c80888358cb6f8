// The demo behind `npm start`: a chat server whose rooms are gated by a token.
// Good token: accepted (with the chat.v2 subprotocol when offered).
// Bad token: 401 with WWW-Authenticate. Unknown room: 404. Room "slow": the
// decision never comes, so the client gets 503 with Retry-After after 3 s.
import Fastify from 'fastify'
import fastifyWsGate, { accept, reject } from 'fastify-ws-gate'

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
const TOKEN = 'secret'
const rooms = new Map([['lobby', new Set()], ['dev', new Set()], ['slow', new Set()]])

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'warn' } })
await app.register(fastifyWsGate, { handshakeTimeout: 3000 })

app.get('/rooms/:room', {
  websocket: true,
  schema: {
    querystring: { type: 'object', properties: { token: { type: 'string' } } }
  },
  handshake: async (request, { protocols, signal }) => {
    if (request.query.token !== TOKEN) {
      return reject(401, 'Invalid token', { headers: { 'WWW-Authenticate': 'Bearer realm="demo"' } })
    }
    const { room } = request.params
    if (!rooms.has(room)) return reject(404, `No such room: ${room}`)
    if (room === 'slow') {
      // A lookup that never finishes; the signal tells us when to give up.
      await new Promise((resolve) => signal.addEventListener('abort', resolve))
    }
    return accept({
      protocol: protocols.includes('chat.v2') ? 'chat.v2' : undefined,
      headers: { 'Set-Cookie': `room=${room}; Path=/; HttpOnly` }
    })
  }
}, (socket, request) => {
  const members = rooms.get(request.params.room)
  members.add(socket)
  socket.send(`welcome to ${request.params.room} (${members.size} here, protocol: ${socket.protocol || 'none'})`)
  socket.on('message', (data) => {
    for (const peer of members) peer.send(String(data))
  })
  socket.on('close', () => members.delete(socket))
})

await app.listen({ port, host })

const base = `${host}:${app.server.address().port}`
const curl = (path) => `curl -i -N --max-time 5 -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' 'http://${base}${path}'`
const ws = (path) => `node examples/client.mjs 'ws://${base}${path}' chat.v2`

console.log(`
fastify-ws-gate demo on ws://${base}/rooms/:room  (rooms: lobby, dev, slow; token: ${TOKEN})

Paste any of these in another terminal, from this folder:

  accepted, 101 with chat.v2:   ${ws('/rooms/lobby?token=secret')}
  401 Invalid token:            ${ws('/rooms/lobby?token=wrong')}
  404 No such room:             ${ws('/rooms/kitchen?token=secret')}
  503 after 3 s (timeout):      ${ws('/rooms/slow?token=secret')}

The raw bytes, with curl:

  101:  ${curl('/rooms/lobby?token=secret')}
  401:  ${curl('/rooms/lobby?token=wrong')}
  404:  ${curl('/rooms/kitchen?token=secret')}
  503:  ${curl('/rooms/slow?token=secret')}

Ctrl+C to stop.
`)
