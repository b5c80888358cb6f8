// @fastify/websocket alone with its defaults, for bench/attacks.mjs: the
// routes of attack-gate.mjs, deciding in hooks (no /asgi-close: no asgi()).
import fastifyWebsocket from '@fastify/websocket'
import Fastify from 'fastify'
import { commands, errorLogger, SLOW_HOOK_MS, sleep, watch } from './attack-common.mjs'
import { counters, serve } from './common.mjs'

const app = Fastify({ logger: errorLogger })
await app.register(fastifyWebsocket)
const connected = (socket) => watch(socket, (err) => app.log.error({ err }, 'websocket error'))
app.get('/accept', { websocket: true }, connected)
app.get('/close', { websocket: true }, (socket) => {
  connected(socket)
  socket.close(1000, 'bye')
})
app.get('/pending', { websocket: true, preValidation: () => { counters.pending++; return new Promise(() => {}) } }, connected)
app.get('/slow-hook', { websocket: true, onRequest: async () => { await sleep(SLOW_HOOK_MS) } }, connected)
await app.ready()
commands(() => app.close())
await serve(app.server)
