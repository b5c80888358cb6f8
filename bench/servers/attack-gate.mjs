// fastify-ws-gate with its defaults, for bench/attacks.mjs: /accept, /close
// (accepts, then closes), /asgi-close (an asgi() app that accepts, then sends
// websocket.close), /pending (a handshake that never settles) and /slow-hook
// (a plain websocket route whose async onRequest hook takes SLOW_HOOK_MS), and
// /declared-before (declared before the gate is registered).
// WS_GATE_MAX_PENDING: its maxPendingHandshakes, instead of the default.
import Fastify from 'fastify'
import { commands, errorLogger, SLOW_HOOK_MS, sleep, watch } from './attack-common.mjs'
import { counters, serve } from './common.mjs'

// WS_GATE_MODULE: another build of the package (bench/attacks.mjs --before DIR).
const { default: fastifyWsGate, accept, asgi, reject } = await import(process.env.WS_GATE_MODULE ?? 'fastify-ws-gate')
const app = Fastify({ logger: errorLogger })
// A route declared before the gate is registered (the gate never sees its
// options), whose handshake always refuses: what an upgrade to it gets, and
// whether its handler runs (it says so at error level).
app.get('/declared-before', { websocket: true, handshake: () => reject(401) }, (socket) => {
  app.log.error('the handler of /declared-before ran')
  socket.close?.()
})
await app.register(fastifyWsGate, process.env.WS_GATE_MAX_PENDING === undefined ? {} : { maxPendingHandshakes: Number(process.env.WS_GATE_MAX_PENDING) })
const connected = (socket) => watch(socket, (err) => app.log.error({ err }, 'websocket error'))
app.get('/accept', { websocket: true, handshake: () => accept() }, connected)
app.get('/close', { websocket: true, handshake: () => accept() }, (socket) => {
  connected(socket)
  socket.close(1000, 'bye')
})
app.get('/asgi-close', asgi(async (_scope, receive, send) => {
  await receive()
  await send({ type: 'websocket.accept' })
  await send({ type: 'websocket.close', code: 1000 })
}))
app.get('/pending', { websocket: true, handshake: () => { counters.pending++; return new Promise(() => {}) } }, connected)
app.get('/slow-hook', { websocket: true, onRequest: async () => { await sleep(SLOW_HOOK_MS) } }, connected)
await app.ready()
commands(() => app.close())
await serve(app.server)
