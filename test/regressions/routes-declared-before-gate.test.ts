// Issue 17, item 1: a route with `handshake` declared before the gate was
// registered was never seen by it, and its upgrade went straight to the
// route's handler: the handshake (often the authentication) never ran. Now
// such an upgrade is answered 500 and logged with FST_WS_GATE_UNGATED_ROUTE
// before any of the route's own code, and the gate names those routes in a
// warning at startup.
import fastifyWebsocket from '@fastify/websocket'
import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import fastifyWsGate, { reject } from '../../lib/index.js'
import { connectWs, denied, opened, type LogLine } from '../helpers.js'

const INTERNAL = { statusCode: 500, error: 'Internal Server Error', message: 'Internal Server Error' }

interface Seen { handshakes: number, handlers: number, hooks: number }

async function listen (t: tap.Test, app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return (app.server.address() as { port: number }).port
}

function logged (): { app: FastifyInstance, logs: LogLine[] } {
  const logs: LogLine[] = []
  const app = Fastify({ logger: { level: 'debug', stream: { write: (line: string) => { logs.push(JSON.parse(line)) } } } })
  return { app, logs }
}

// A route whose handshake always refuses: an upgrade that opens a connection skipped it.
function guardedRoute (app: FastifyInstance, seen: Seen, url = '/ws'): void {
  app.get(url, {
    websocket: true,
    onRequest: async () => { seen.hooks++ },
    handshake: () => { seen.handshakes++; return reject(401) }
  }, (socket) => { seen.handlers++; socket.send('you are in') })
}

async function expectRefused (t: tap.Test, port: number, logs: LogLine[], seen: Seen, url = '/ws'): Promise<void> {
  const outcome = denied(await connectWs(port, url))
  t.equal(outcome.statusCode, 500)
  t.strictSame(JSON.parse(outcome.body), INTERNAL)
  t.equal(outcome.headers.connection, 'close')
  t.strictSame(seen, { handshakes: 0, handlers: 0, hooks: 0 }, 'none of the route\'s code ran')
  const errors = logs.filter((line) => line.level === 50)
  t.equal(errors.length, 1)
  t.equal((errors[0].err as { code: string }).code, 'FST_WS_GATE_UNGATED_ROUTE')
  t.equal((errors[0].err as { message: string }).message, `The upgrade reached route GET ${url} without passing fastify-ws-gate; it was refused`)
}

function startupWarning (logs: LogLine[]): LogLine[] {
  return logs.filter((line) => line.level === 40 && line.code === 'FST_WS_GATE_REGISTERED_AFTER_ROUTES')
}

t.test('a route declared before `await app.register(fastifyWsGate)`: its upgrade is refused with 500, its handshake and handler never run', async (t) => {
  const { app, logs } = logged()
  const seen = { handshakes: 0, handlers: 0, hooks: 0 }
  guardedRoute(app, seen)
  await app.register(fastifyWsGate)
  const port = await listen(t, app)
  const [warning] = startupWarning(logs)
  t.match(warning.msg, /^fastify-ws-gate was registered after these routes, so it never saw their options; upgrades to them are answered 500\. Register it \(with await\) before your routes:\n└── \/ws \(GET, HEAD\)\n$/)
  await expectRefused(t, port, logs, seen)
})

t.test('`app.register(fastifyWsGate)` without await, then routes at the root (CommonJS style): refused too', async (t) => {
  const { app, logs } = logged()
  const seen = { handshakes: 0, handlers: 0, hooks: 0 }
  app.register(fastifyWsGate)
  guardedRoute(app, seen)
  const port = await listen(t, app)
  t.equal(startupWarning(logs).length, 1)
  await expectRefused(t, port, logs, seen)
})

t.test('a route in a plugin registered before the gate: refused, though the gate\'s hooks were added after that context was made', async (t) => {
  const { app, logs } = logged()
  const seen = { handshakes: 0, handlers: 0, hooks: 0 }
  app.register(async (child) => { guardedRoute(child, seen, '/child') })
  await app.register(fastifyWsGate)
  const port = await listen(t, app)
  await expectRefused(t, port, logs, seen, '/child')
})

t.test('@fastify/websocket registered first, a route, then the gate: refused (it never reaches ws)', async (t) => {
  const { app, logs } = logged()
  const seen = { handshakes: 0, handlers: 0, hooks: 0 }
  await app.register(fastifyWebsocket)
  guardedRoute(app, seen)
  await app.register(fastifyWsGate)
  const port = await listen(t, app)
  await expectRefused(t, port, logs, seen)
})

t.test('routes declared after the gate are gated as usual, and HTTP requests to earlier routes still work', async (t) => {
  const { app, logs } = logged()
  app.get('/health', async () => 'ok')
  await app.register(fastifyWsGate)
  const seen = { handshakes: 0, handlers: 0, hooks: 0 }
  guardedRoute(app, seen)
  app.get('/open', { websocket: true }, (socket) => { socket.send('hi') })
  const port = await listen(t, app)
  t.equal((await app.inject('/health')).body, 'ok')
  t.equal(denied(await connectWs(port, '/ws')).statusCode, 401)
  t.strictSame(seen, { handshakes: 1, handlers: 0, hooks: 1 })
  const open = opened(await connectWs(port, '/open'))
  t.equal(await open.first, 'hi')
  open.ws.close()
  t.equal(denied(await connectWs(port, '/health')).statusCode, 500, 'an upgrade to a plain route the gate never saw: 500, not its handler')
  t.equal(logs.filter((line) => line.level === 50).length, 1)
})

t.test('no warning when the gate comes before every route', async (t) => {
  const { app, logs } = logged()
  await app.register(fastifyWsGate)
  app.get('/x', async () => 'x')
  await listen(t, app)
  t.strictSame(startupWarning(logs), [])
})

t.test('the gate adds its onRequest hook only when routes were declared before it (it costs every request)', async (t) => {
  const hooked = (app: FastifyInstance): boolean => app.printRoutes({ includeHooks: true }).includes('refuseUngatedUpgrades()')
  const first = Fastify()
  await first.register(fastifyWsGate)
  const seen = { handshakes: 0, handlers: 0, hooks: 0 }
  guardedRoute(first, seen)
  const port = await listen(t, first)
  t.equal(hooked(first), false)
  t.equal(denied(await connectWs(port, '/ws')).statusCode, 401, 'the gate still decides')
  t.strictSame(seen, { handshakes: 1, handlers: 0, hooks: 1 })
  const late = Fastify()
  late.get('/health', async () => 'ok')
  await late.register(fastifyWsGate)
  await late.ready()
  t.teardown(() => late.close())
  t.equal(hooked(late), true)
})

t.test('a route added after the gate through a context made before it (kept past its plugin): never upgraded', async (t) => {
  const { app } = logged()
  let api: FastifyInstance | undefined
  app.register(async (instance) => { api = instance }, { prefix: '/api' })
  await app.register(fastifyWsGate)
  const seen = { handshakes: 0, handlers: 0, hooks: 0 }
  // Seen by neither the gate nor @fastify/websocket (neither hook reaches
  // that context): Fastify runs its handler as an HTTP handler, which fails.
  guardedRoute(api as FastifyInstance, seen)
  const port = await listen(t, app)
  const outcome = denied(await connectWs(port, '/api/ws'))
  t.equal(outcome.statusCode, 500)
  t.equal(outcome.headers.connection, 'close')
  t.equal(seen.handshakes, 0, 'its handshake never ran')
  t.equal(app.websocketServer.clients.size, 0, 'no WebSocket opened')
})
