// (1) fastify-ws-gate: the decision in `handshake`, as accept() / reject(401).
import Fastify from 'fastify'
import { BODY, counters, serve } from './common.mjs'

// WS_GATE_MODULE: another build of the package (npm run bench -- --compare DIR).
const { default: fastifyWsGate, accept, reject } = await import(process.env.WS_GATE_MODULE ?? 'fastify-ws-gate')
const app = Fastify({ logger: false })
await app.register(fastifyWsGate, { handshakeTimeout: 0 })
const denial = { headers: { 'WWW-Authenticate': 'Bearer', 'Content-Type': 'application/json; charset=utf-8' }, body: BODY }
app.get('/accept', { websocket: true, handshake: async () => accept() }, () => {})
app.get('/reject', { websocket: true, handshake: async () => reject(401, undefined, denial) }, () => {})
app.get('/pending', { websocket: true, handshake: () => { counters.pending++; return new Promise(() => {}) } }, () => {})
await app.ready()
await serve(app.server)
