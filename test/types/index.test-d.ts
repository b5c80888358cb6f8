// Type tests, checked by `npm run typecheck` (tsc). Each line below an
// expect-error directive must fail to compile; everything else must compile.
import Fastify, { type FastifyRequest } from 'fastify'
import fastifyWsGate, {
  accept, asgi, errors, fastifyWsGate as plugin, HANDSHAKE_CHANNEL, reject, type AcceptDecision, type AsgiApp, type AsgiReceiveMessage, type HandshakeContext,
  type HandshakeDecision, type HandshakeHandler, type InjectedHandshake, type RejectDecision, type RejectVia, type WebSocketScope,
  memoryLimitStore, redisLimitStore, type ConnectionLimit, type ConnectionLimitsOptions, type LimitStore
} from '../../lib/index.js'

const app = Fastify()
app.register(fastifyWsGate)
app.register(fastifyWsGate, { handshakeTimeout: 5000, websocket: { options: { maxPayload: 1024 } } })
// @ts-expect-error handshakeTimeout is a number
app.register(fastifyWsGate, { handshakeTimeout: '5s' })

// The named export is the plugin too, and the public types are also on the
// plugin's namespace (the package's declaration is an `export =`).
app.register(plugin, { rejectVia: 'auto' })
// @ts-expect-error handshakeTimeout is a number
app.register(plugin, { handshakeTimeout: '5s' })
const onNamespace: fastifyWsGate.HandshakeDecision = fastifyWsGate.accept()
const channel: 'fastify-ws-gate:handshake' = HANDSHAKE_CHANNEL
const coded: Error & { code: string } = new errors.FST_WS_GATE_BAD_REQUEST('bad')
console.log(onNamespace, channel, coded)

const a: AcceptDecision = accept({ protocol: 'chat', headers: { 'set-cookie': ['a=1', 'b=2'] } })
const r: RejectDecision = reject(401, 'Invalid token', { headers: [['www-authenticate', 'Bearer']], body: { why: 'expired' } })
const decisions: HandshakeDecision[] = [a, r, reject(), accept(), reject(503, undefined, { body: Buffer.from('x') })]

// @ts-expect-error the status is a number
reject('401')
// @ts-expect-error protocol is a string
accept({ protocol: 2 })

// Shorthand: the request is typed from the route generic.
app.get<{ Querystring: { token: string }, Params: { room: string } }>('/rooms/:room', {
  websocket: true,
  handshakeTimeout: 1000,
  handshake: async (request, ctx) => {
    const token: string = request.query.token
    const room: string = request.params.room
    const signal: AbortSignal = ctx.signal
    const protocols: readonly string[] = ctx.protocols
    signal.throwIfAborted()
    return token === room ? accept({ protocol: protocols[0] }) : reject(404)
  }
}, (socket, request) => {
  socket.send(request.params.room)
})

// A synchronous handler is fine too.
app.get('/sync', { websocket: true, handshake: () => reject() }, () => {})

// app.route
app.route({
  method: 'GET',
  url: '/route',
  websocket: true,
  handshake: (request: FastifyRequest) => request.headers.authorization !== undefined ? accept() : reject(401),
  handler: (socket) => { socket.close() }
})

// A handler that returns anything but a decision does not compile.
// @ts-expect-error a boolean is not a decision
app.get('/bool', { websocket: true, handshake: () => true }, () => {})
// @ts-expect-error undefined is not a decision
app.get('/void', { websocket: true, handshake: () => {} }, () => {})
// @ts-expect-error a lookalike object is not a decision
app.get('/like', { websocket: true, handshake: async () => ({ status: 401 }) }, () => {})
app.route({
  method: 'GET',
  url: '/route-bad',
  websocket: true,
  // @ts-expect-error a string is not a decision
  handshake: () => 'accept',
  handler: () => {}
})

// ctx has only signal and protocols, both read-only.
const handler: HandshakeHandler = (_request, ctx: HandshakeContext) => {
  // @ts-expect-error protocols is read-only
  ctx.protocols.push('x')
  // @ts-expect-error there is no accept on ctx
  ctx.accept()
  return accept()
}
export { decisions, handler }

// asgi(): messages are discriminated unions; a typo in `type` does not compile.
const echo: AsgiApp = async (scope: WebSocketScope, receive, send) => {
  const first: AsgiReceiveMessage = await receive()
  if (first.type !== 'websocket.connect') return
  const query: Buffer = scope.query_string
  if (query.length === 0) {
    await send({ type: 'websocket.http.response.start', status: 401, headers: [['www-authenticate', 'Bearer'], [Buffer.from('x'), Buffer.from('y')]] })
    await send({ type: 'websocket.http.response.body', body: 'token required', more_body: false })
    return
  }
  await send({ type: 'websocket.accept', subprotocol: scope.subprotocols[0] ?? null })
  for (;;) {
    const message = await receive()
    if (message.type === 'websocket.disconnect') {
      const code: number = message.code
      return code === 1000 ? undefined : undefined
    }
    if (message.type === 'websocket.receive') {
      await send({ type: 'websocket.send', text: `echo: ${message.text ?? message.bytes?.length}` })
    }
  }
}
app.get('/live/*', asgi(echo))
app.get('/live2/*', asgi(echo, { handshakeTimeout: 1000, rootPath: '/live2' }))
app.route({ method: 'GET', url: '/live3', ...asgi(echo) })

asgi(async (_scope, _receive, send) => {
  // @ts-expect-error a typo in a message type
  await send({ type: 'websocket.acept' })
  // @ts-expect-error status is a number
  await send({ type: 'websocket.http.response.start', status: '401' })
  // @ts-expect-error more_body is spelled with an underscore, as in the spec
  await send({ type: 'websocket.http.response.body', body: 'x', moreBody: true })
})
// @ts-expect-error the application takes (scope, receive, send)
asgi((scope: string) => scope)

// The example from the issue, as written, compiles under strict.
app.get('/live-issue/*', asgi(async (scope, receive, send) => {
  const connect = await receive()
  if (connect.type !== 'websocket.connect') return
  if (!scope.query_string.includes('token=')) {
    await send({ type: 'websocket.http.response.start', status: 401, headers: [['www-authenticate', 'Bearer']] })
    await send({ type: 'websocket.http.response.body', body: 'token required' })
    return
  }
  await send({ type: 'websocket.accept', subprotocol: scope.subprotocols[0] })
  for (;;) {
    const m = await receive()
    if (m.type === 'websocket.disconnect') return
    await send({ type: 'websocket.send', text: `echo: ${m.text ?? m.bytes?.length}` })
  }
}))

// rejectVia, at the plugin and on a route.
app.register(fastifyWsGate, { rejectVia: 'auto' })
// @ts-expect-error rejectVia is 'http', 'close-frame' or 'auto'
app.register(fastifyWsGate, { rejectVia: 'frame' })
app.get('/frames', { websocket: true, rejectVia: 'close-frame', handshake: () => reject(401) }, () => {})
const via: RejectVia = 'http'

// injectHandshake: the outcome narrows on `accepted`.
async function injected (): Promise<void> {
  const res: InjectedHandshake = await app.injectHandshake('/rooms/lobby', { query: { token: 'x', tags: ['a', 'b'] }, protocols: ['chat'], headers: { origin: 'https://a.example' } })
  if (res.accepted) {
    const protocol: string = res.protocol
    res.socket.send(protocol)
    // @ts-expect-error an accepted handshake has no status code
    console.log(res.statusCode)
  } else {
    const status: number = res.statusCode
    const body: { message: string } = res.json<{ message: string }>()
    console.log(status, body, res.body.length)
  }
  // @ts-expect-error the query's values are strings
  await app.injectHandshake('/x', { query: { n: 1 } })
}
console.log(via, injected)

// Connection limits: the stores, the plugin option, and a route's limits,
// whose key sees the route's typed request.
{
  const store: LimitStore = memoryLimitStore()
  const client = { evalsha: async () => null, eval: async () => null }
  const shared: LimitStore = redisLimitStore({ client, prefix: 'chat', timeout: 500 })
  const limits: ConnectionLimitsOptions = { store, leaseTtl: 15_000, onStoreError: 'allow', retryAfter: 10 }
  app.register(fastifyWsGate, { connectionLimits: limits, http2: false })
  app.register(fastifyWsGate, { connectionLimits: { store: shared } })
  // @ts-expect-error onStoreError is 'deny' or 'allow'
  app.register(fastifyWsGate, { connectionLimits: { onStoreError: 'maybe' } })
  app.get<{ Params: { room: string } }>('/limited/:room', {
    websocket: true,
    handshake: () => accept(),
    connectionLimit: [{ key: (request) => `room:${request.params.room}`, max: 100 }, { key: (request) => request.ip, max: 5 }]
  }, () => {})
  const one: ConnectionLimit = { key: () => undefined, max: 1, shared: true }
  app.get('/one', { websocket: true, connectionLimit: one }, () => {})
  // @ts-expect-error a key returns a string or undefined
  app.get('/bad', { websocket: true, connectionLimit: { key: () => 42, max: 1 } }, () => {})
  const leases: number = app.wsGate.leases
  console.log(leases)
}
