// (2) @fastify/websocket alone, deciding in a preValidation hook (what users do today).
import fastifyWebsocket from '@fastify/websocket'
import Fastify from 'fastify'
import { BODY, counters, serve } from './common.mjs'

const app = Fastify({ logger: false })
await app.register(fastifyWebsocket)
app.get('/accept', { websocket: true, preValidation: async () => {} }, () => {})
app.get('/reject', {
  websocket: true,
  preValidation: async (_request, reply) => reply.code(401).header('WWW-Authenticate', 'Bearer').type('application/json; charset=utf-8').send(BODY)
}, () => {})
app.get('/pending', { websocket: true, preValidation: () => { counters.pending++; return new Promise(() => {}) } }, () => {})
await app.ready()
await serve(app.server)
