// The recipes of docs/recipes.md, run as they ship: each examples/recipes/*.mjs
// builds a real app on the built package with the real Fastify plugin it is
// about (@fastify/jwt, @fastify/rate-limit, @fastify/cookie, @fastify/sensible,
// prom-client), and a real `ws` client checks the exact answers.
import type { IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import fastifyCookie from '@fastify/cookie'
import type {} from '@fastify/jwt' // its types: app.jwt on the recipe's app
import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import WebSocket from 'ws'
import fastifyWsGate, { accept, reject } from '../lib/index.js'
import { connectWs, denied, opened, type Outcome } from './helpers.js'

type Build = (options?: Record<string, unknown>) => Promise<FastifyInstance>

// A template literal, so that TypeScript leaves the plain-JS module alone.
async function recipe (name: string): Promise<Build> {
  const module = await import(`../examples/recipes/${name}.mjs`) as { build: Build }
  return module.build
}

interface Tap { teardown (fn: () => unknown): void }

async function listen (t: Tap, app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return (app.server.address() as AddressInfo).port
}

// What the client saw of a denial, whole, with the Date header's value set aside.
function denial (outcome: Outcome): { status: string, headers: IncomingHttpHeaders, body: string } {
  const { statusCode, statusMessage, headers, body } = denied(outcome)
  const { date, ...rest } = headers
  if (typeof date !== 'string' || Number.isNaN(Date.parse(date))) throw new Error(`no valid Date header: ${date}`)
  return { status: `${statusCode} ${statusMessage}`, headers: rest, body }
}

// The headers of a 101, without Sec-WebSocket-Accept (which the client checked).
function switched (outcome: Extract<Outcome, { accepted: true }>): IncomingHttpHeaders {
  const { 'sec-websocket-accept': _accept, ...rest } = outcome.headers
  return rest
}

const json = (value: unknown): IncomingHttpHeaders => {
  const body = JSON.stringify(value)
  return { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), connection: 'close' }
}

t.test('jwt: a token from the query, a subprotocol or Authorization; 401 otherwise', async (t) => {
  const app = await (await recipe('jwt'))({ secret: 'test-secret-0123456789' })
  const port = await listen(t, app)
  const alice = app.jwt.sign({ sub: 'alice' })

  const fromQuery = opened(await connectWs(port, `/chat?access_token=${alice}`))
  t.strictSame(switched(fromQuery), { upgrade: 'websocket', connection: 'Upgrade' })
  t.equal(fromQuery.protocol, '')
  t.equal(await fromQuery.first, 'hello alice')
  fromQuery.ws.close()

  // The browser way: the token rides as a subprotocol; the 101 selects the app's one.
  const bob = app.jwt.sign({ sub: 'bob' })
  const fromProtocol = opened(await connectWs(port, '/chat', { protocols: ['chat.v1', `bearer.${bob}`] }))
  t.strictSame(switched(fromProtocol), { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-protocol': 'chat.v1' })
  t.equal(fromProtocol.protocol, 'chat.v1')
  t.equal(await fromProtocol.first, 'hello bob')
  fromProtocol.ws.close()

  const fromHeader = opened(await connectWs(port, '/chat', { headers: { Authorization: `Bearer ${app.jwt.sign({ sub: 'carol' })}` } }))
  t.equal(await fromHeader.first, 'hello carol')
  fromHeader.ws.close()

  // Only the token offered: nothing to select, and ws insists on a selection.
  await t.rejects(connectWs(port, '/chat', { protocols: [`bearer.${alice}`] }), { message: 'Server sent no subprotocol' })

  const required = {
    status: '401 Unauthorized',
    headers: { 'www-authenticate': 'Bearer realm="chat"', ...json({ statusCode: 401, error: 'Unauthorized', message: 'Token required' }) },
    body: '{"statusCode":401,"error":"Unauthorized","message":"Token required"}'
  }
  t.strictSame(denial(await connectWs(port, '/chat')), required, 'no token')
  t.strictSame(denial(await connectWs(port, '/chat', { headers: { Authorization: `Basic ${alice}` } })), required, 'not a Bearer token')

  const invalid = {
    status: '401 Unauthorized',
    headers: { 'www-authenticate': 'Bearer realm="chat", error="invalid_token"', ...json({ statusCode: 401, error: 'Unauthorized', message: 'Invalid token' }) },
    body: '{"statusCode":401,"error":"Unauthorized","message":"Invalid token"}'
  }
  t.strictSame(denial(await connectWs(port, '/chat?access_token=nope')), invalid, 'not a JWT')
  const other = await (await recipe('jwt'))({ secret: 'another-secret-9876543210' })
  await other.ready()
  t.teardown(() => other.close())
  const forged = other.jwt.sign({ sub: 'alice' })
  t.strictSame(denial(await connectWs(port, '/chat', { protocols: ['chat.v1', `bearer.${forged}`] })), invalid, 'signed with another secret')
  const expired = app.jwt.sign({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 60 })
  t.strictSame(denial(await connectWs(port, '/chat', { protocols: ['chat.v1', `bearer.${expired}`] })), invalid, 'expired')
})

t.test('rate-limit: upgrade attempts count; the excess gets 429 with Retry-After and x-ratelimit-*', async (t) => {
  const app = await (await recipe('rate-limit'))({ max: 2, roomMax: 3 })
  const port = await listen(t, app)
  const limited = (limit: number): unknown => ({
    status: '429 Too Many Requests',
    headers: {
      'x-ratelimit-limit': String(limit),
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': '60',
      'retry-after': '60',
      ...json({ statusCode: 429, error: 'Too Many Requests', message: 'Rate limit exceeded, retry in 1 minute' })
    },
    body: '{"statusCode":429,"error":"Too Many Requests","message":"Rate limit exceeded, retry in 1 minute"}'
  })

  // Per-route config.rateLimit (3 a minute): a refused handshake counts too.
  t.strictSame(denial(await connectWs(port, '/rooms/kitchen')), {
    status: '404 Not Found',
    headers: json({ statusCode: 404, error: 'Not Found', message: 'No such room' }),
    body: '{"statusCode":404,"error":"Not Found","message":"No such room"}'
  })
  const lobby = opened(await connectWs(port, '/rooms/lobby'))
  // The 101 is written by ws: the x-ratelimit-* headers the hook set on the reply are not in it.
  t.strictSame(switched(lobby), { upgrade: 'websocket', connection: 'Upgrade' })
  t.equal(await lobby.first, 'welcome to lobby')
  const dev = opened(await connectWs(port, '/rooms/dev'))
  t.equal(await dev.first, 'welcome to dev')
  t.strictSame(denial(await connectWs(port, '/rooms/lobby')), limited(3))
  // continueExceeding restarts the window on each refused attempt: Retry-After stays the full 60 s.
  t.strictSame(denial(await connectWs(port, '/rooms/dev')), limited(3))

  // The global limit (2 a minute), with its own counter.
  for (let i = 0; i < 2; i++) {
    const feed = opened(await connectWs(port, '/feed'))
    t.equal(await feed.first, 'feed', `feed ${i + 1}`)
  }
  t.strictSame(denial(await connectWs(port, '/feed')), limited(2))
  for (const outcome of [lobby, dev]) outcome.ws.close()
})

t.test('cookie: a signed session cookie opens the WebSocket, and the 101 refreshes it', async (t) => {
  const app = await (await recipe('cookie'))({ secret: 'cookie-secret-0123456789', allowedOrigins: ['https://chat.example'] })
  const port = await listen(t, app)
  const sessionCookie = `session=${app.signCookie('alice')}; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax`

  const login = await fetch(`http://127.0.0.1:${port}/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":"alice"}'
  })
  t.equal(login.status, 200)
  t.strictSame(login.headers.getSetCookie(), [sessionCookie])
  t.equal(await login.text(), '{"user":"alice"}')
  const cookie = sessionCookie.slice(0, sessionCookie.indexOf(';'))

  const fromPage = opened(await connectWs(port, '/chat', { headers: { Cookie: cookie, Origin: 'https://chat.example' } }))
  t.strictSame(switched(fromPage), { upgrade: 'websocket', connection: 'Upgrade', 'set-cookie': [sessionCookie] })
  t.equal(await fromPage.first, 'hello alice')
  fromPage.ws.close()

  const unauthorized = {
    status: '401 Unauthorized',
    headers: { 'www-authenticate': 'Cookie realm="chat"', ...json({ statusCode: 401, error: 'Unauthorized', message: 'Log in first' }) },
    body: '{"statusCode":401,"error":"Unauthorized","message":"Log in first"}'
  }
  t.strictSame(denial(await connectWs(port, '/chat', { headers: { Origin: 'https://chat.example' } })), unauthorized, 'no cookie')
  const forged = `session=mallory.${cookie.slice(cookie.indexOf('.') + 1)}`
  t.strictSame(denial(await connectWs(port, '/chat', { headers: { Cookie: forged } })), unauthorized, 'a forged cookie')
  t.strictSame(denial(await connectWs(port, '/chat', { headers: { Cookie: 'session=alice' } })), unauthorized, 'an unsigned cookie')

  // Another site's page, with the user's cookie: refused before the handler.
  const body = JSON.stringify({ statusCode: 403, code: 'FST_WS_GATE_ORIGIN_NOT_ALLOWED', error: 'Forbidden', message: 'Origin "https://evil.example" is not allowed' })
  t.strictSame(denial(await connectWs(port, '/chat', { headers: { Cookie: cookie, Origin: 'https://evil.example' } })), {
    status: '403 Forbidden',
    headers: json(JSON.parse(body)),
    body
  })
})

t.test('cookie: what reply.setCookie() does on an upgrade', async (t) => {
  // Not in the recipe: the behaviour that makes it serialise the cookie itself.
  const app = Fastify()
  await app.register(fastifyWsGate)
  await app.register(fastifyCookie)
  app.addHook('preHandler', async (request, reply) => {
    reply.setCookie('seen', '1')
    if (request.url === '/hook-denies') return reply.code(401).send({ denied: true })
  })
  app.get('/accepted', { websocket: true, handshake: () => accept() }, (socket) => { socket.send('in') })
  app.get('/rejected', { websocket: true, handshake: () => reject(409, 'Busy') }, () => {})
  app.get('/hook-denies', { websocket: true, handshake: () => accept() }, () => {})
  const port = await listen(t, app)

  const accepted = opened(await connectWs(port, '/accepted'))
  t.strictSame(switched(accepted), { upgrade: 'websocket', connection: 'Upgrade' }, 'not on the 101')
  t.equal(await accepted.first, 'in')
  accepted.ws.close()
  t.strictSame(denial(await connectWs(port, '/rejected')), {
    status: '409 Conflict',
    headers: json({ statusCode: 409, error: 'Conflict', message: 'Busy' }),
    body: '{"statusCode":409,"error":"Conflict","message":"Busy"}'
  }, 'not on a reject() either')
  t.strictSame(denial(await connectWs(port, '/hook-denies')), {
    status: '401 Unauthorized',
    headers: { 'set-cookie': ['seen=1; SameSite=Lax'], 'content-type': 'application/json; charset=utf-8', 'content-length': '15', connection: 'close' },
    body: '{"denied":true}'
  }, 'but on a reply Fastify sends')
})

t.test('sensible: httpErrors thrown in a handshake become denials with Fastify\'s error body', async (t) => {
  const build = await recipe('sensible')
  const port = await listen(t, await build())

  const member = opened(await connectWs(port, '/rooms/lobby?user=alice'))
  t.equal(await member.first, 'welcome to lobby, alice')
  member.ws.close()
  t.strictSame(denial(await connectWs(port, '/rooms/staff?user=alice')), {
    status: '403 Forbidden',
    headers: json({ statusCode: 403, error: 'Forbidden', message: 'Members only' }),
    body: '{"statusCode":403,"error":"Forbidden","message":"Members only"}'
  })
  t.strictSame(denial(await connectWs(port, '/rooms/kitchen?user=alice')), {
    status: '404 Not Found',
    headers: json({ statusCode: 404, error: 'Not Found', message: 'No such room: kitchen' }),
    body: '{"statusCode":404,"error":"Not Found","message":"No such room: kitchen"}'
  })

  // An error's headers go out with it.
  const drainingPort = await listen(t, await build({ draining: true }))
  t.strictSame(denial(await connectWs(drainingPort, '/rooms/lobby?user=alice')), {
    status: '503 Service Unavailable',
    headers: { 'retry-after': '30', ...json({ statusCode: 503, error: 'Service Unavailable', message: 'Draining, try another node' }) },
    body: '{"statusCode":503,"error":"Service Unavailable","message":"Draining, try another node"}'
  })
})

t.test('redirect: 307 to the node that owns the room, followed by ws to a 101 there', async (t) => {
  const build = await recipe('redirect')
  const portB = await listen(t, await build({ name: 'b', rooms: ['dev'] }))
  const nodeB = `ws://127.0.0.1:${portB}`
  const portA = await listen(t, await build({ name: 'a', rooms: ['lobby'], directory: new Map([['dev', nodeB]]) }))

  t.strictSame(denial(await connectWs(portA, '/rooms/dev?token=t1')), {
    status: '307 Temporary Redirect',
    headers: { location: `${nodeB}/rooms/dev?token=t1`, ...json({ statusCode: 307, error: 'Temporary Redirect', message: 'Moved' }) },
    body: '{"statusCode":307,"error":"Temporary Redirect","message":"Moved"}'
  })
  t.strictSame(denial(await connectWs(portA, '/rooms/kitchen')), {
    status: '404 Not Found',
    headers: json({ statusCode: 404, error: 'Not Found', message: 'No such room: kitchen' }),
    body: '{"statusCode":404,"error":"Not Found","message":"No such room: kitchen"}'
  })

  const ws = new WebSocket(`ws://127.0.0.1:${portA}/rooms/dev?token=t1`, { followRedirects: true })
  const redirects: string[] = []
  ws.on('redirect', (url: string) => { redirects.push(url) })
  const statuses: number[] = []
  ws.on('upgrade', (res) => { statuses.push(res.statusCode as number) })
  const first = await new Promise<string>((resolve, reject) => {
    ws.once('message', (data) => resolve(String(data)))
    ws.once('error', reject)
  })
  t.equal(first, 'welcome to dev on node b')
  t.strictSame(redirects, [`${nodeB}/rooms/dev?token=t1`])
  t.strictSame(statuses, [101])
  t.equal(ws.url, `${nodeB}/rooms/dev?token=t1`)
  ws.close()
})

t.test('prometheus: handshake outcomes counted and timed, served on /metrics', async (t) => {
  const port = await listen(t, await (await recipe('prometheus'))())
  for (let i = 0; i < 2; i++) {
    const lobby = opened(await connectWs(port, '/rooms/lobby'))
    t.equal(await lobby.first, 'welcome')
    lobby.ws.close()
  }
  for (let i = 0; i < 3; i++) t.equal(denied(await connectWs(port, '/rooms/kitchen')).statusCode, 404)

  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8')
  const lines = (await res.text()).split('\n')
  t.strictSame(lines.filter((line) => line.includes('ws_handshakes_total')), [
    '# HELP ws_handshakes_total WebSocket handshakes by outcome, route and status',
    '# TYPE ws_handshakes_total counter',
    'ws_handshakes_total{outcome="accepted",route="/rooms/:room",status="101"} 2',
    'ws_handshakes_total{outcome="rejected",route="/rooms/:room",status="404"} 3'
  ])
  t.strictSame(lines.filter((line) => /^ws_handshake_duration_seconds_(count|bucket\{le="\+Inf")/.test(line)), [
    'ws_handshake_duration_seconds_bucket{le="+Inf",outcome="accepted",route="/rooms/:room"} 2',
    'ws_handshake_duration_seconds_count{outcome="accepted",route="/rooms/:room"} 2',
    'ws_handshake_duration_seconds_bucket{le="+Inf",outcome="rejected",route="/rooms/:room"} 3',
    'ws_handshake_duration_seconds_count{outcome="rejected",route="/rooms/:room"} 3'
  ])
})
