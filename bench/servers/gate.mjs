// (1) fastify-ws-gate: the decision in `handshake`, as accept() / reject(401).
import Fastify from 'fastify'
import fastifyWsGate, { accept, reject } from 'fastify-ws-gate'
import { BODY, counters, serve } from './common.mjs'

const app = Fastify({ logger: false })
await app.register(fastifyWsGate, { handshakeTimeout: 0 })
const denial = { headers: { 'WWW-Authenticate': 'Bearer', 'Content-Type': 'application/json; charset=utf-8' }, body: BODY }
app.get('/accept', { websocket: true, handshake: async () => accept() }, () => {})
app.get('/reject', { websocket: true, handshake: async () => reject(401, undefined, denial) }, () => {})
app.get('/pending', { websocket: true, handshake: () => { counters.pending++; return new Promise(() => {}) } }, () => {})
await app.ready()
await serve(app.server)
