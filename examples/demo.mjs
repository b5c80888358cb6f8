// The demo behind `npm start`: a chat server whose rooms are gated by a token.
// Good token: accepted (with the chat.v2 or chat.v1 subprotocol when offered).
// Bad token: 401 with WWW-Authenticate. Unknown room: 404. Room "slow": the
// decision never comes, so the client gets 503 with Retry-After after 3 s.
//
// The same rooms twice: /rooms/:room refuses with rejectVia 'auto' (a close
// frame 4401, 4404 for browsers, which send an Origin; HTTP for ws and curl),
// /http/rooms/:room always with HTTP. The page at / tries both in a browser.
//
// A per-user cap: each user (?user=name, 'guest' without one) may have at
// most 3 rooms open at once, across both paths (the in-process store; give
// connectionLimits a redisLimitStore() to share it across a fleet). A fourth
// gets 429 with Retry-After.
import { readFile } from 'node:fs/promises'
import Fastify from 'fastify'
import fastifyWsGate, { accept, reject } from 'fastify-ws-gate'

// PORT and HOST choose where it listens. What a user can fix is one line on
// stderr naming the variable, and exit code 1; not a stack.
const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  fail(`PORT must be a port number from 0 to 65535, not ${JSON.stringify(process.env.PORT)}`)
}
const TOKEN = 'secret'
const rooms = new Map([['lobby', new Set()], ['dev', new Set()], ['slow', new Set()]])

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'warn' } })
await app.register(fastifyWsGate, { handshakeTimeout: 3000, connectionLimits: { retryAfter: 10 } })

// Counted after the handshake accepts, so only signed-in users hold places.
// Shared: one count for both paths.
const perUser = { key: (request) => `user:${request.query.user ?? 'guest'}`, max: 3, shared: true }

// Prefers chat.v2; a client that offered subprotocols gets one it offered.
function chooseProtocol (protocols) {
  return ['chat.v2', 'chat.v1'].find((protocol) => protocols.includes(protocol))
}

async function handshake (request, { protocols, signal }) {
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
    protocol: chooseProtocol(protocols),
    headers: { 'Set-Cookie': `room=${room}; Path=/; HttpOnly` }
  })
}

function chat (socket, request) {
  const members = rooms.get(request.params.room)
  members.add(socket)
  socket.send(`welcome to ${request.params.room} (${members.size} here, protocol: ${socket.protocol || 'none'})`)
  socket.on('message', (data) => {
    for (const peer of members) peer.send(String(data))
  })
  socket.on('close', () => members.delete(socket))
}

const schema = { querystring: { type: 'object', properties: { token: { type: 'string' }, user: { type: 'string' } } } }
app.get('/rooms/:room', { websocket: true, schema, handshake, rejectVia: 'auto', connectionLimit: perUser }, chat)
app.get('/http/rooms/:room', { websocket: true, schema, handshake, rejectVia: 'http', connectionLimit: perUser }, chat)

// The page: one static file, read on each request (no static-file plugin needed).
const page = new URL('./demo/index.html', import.meta.url)
app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(await readFile(page)))

try {
  await app.listen({ port, host })
} catch (err) {
  if (err.code !== 'EADDRINUSE') throw err
  fail(`${host}:${port} is already in use; set the PORT environment variable to another port (PORT=0 picks a free one): PORT=0 npm start`)
}

const base = `${host}:${app.server.address().port}`
const curl = (path, extra = '') => `curl -i -N --max-time 5 -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' ${extra}'http://${base}${path}'`
const ws = (path) => `node examples/client.mjs 'ws://${base}${path}' chat.v2`

console.log(`
fastify-ws-gate demo on ws://${base}/rooms/:room  (rooms: lobby, dev, slow; token: ${TOKEN})

In a browser: http://${base}/  (pick a token, a room, a subprotocol, close frame or HTTP)

Paste any of these in another terminal, from this folder:

  accepted, 101 with chat.v2:   ${ws('/rooms/lobby?token=secret')}
  401 Invalid token:            ${ws('/rooms/lobby?token=wrong')}
  404 No such room:             ${ws('/rooms/kitchen?token=secret')}
  503 after 3 s (timeout):      ${ws('/rooms/slow?token=secret')}
  429 past 3 open per user:     run ${ws('/rooms/dev?token=secret&user=ann')} four times at once

The raw bytes, with curl:

  101:  ${curl('/rooms/lobby?token=secret')}
  401:  ${curl('/rooms/lobby?token=wrong')}
  404:  ${curl('/rooms/kitchen?token=secret')}
  503:  ${curl('/rooms/slow?token=secret')}

As a browser (with an Origin header), a refusal is a 101 then a close frame, code 4401:

  ${curl('/rooms/lobby?token=wrong', `-H 'Origin: http://${base}' `)}

Ctrl+C to stop.
`)

function fail (message) {
  console.error(`fastify-ws-gate demo: ${message}`)
  process.exit(1)
}
