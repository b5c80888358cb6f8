// The server of bench/limits.mjs: one accepting route, with no connection
// limit (LIMIT_STORE=none), the in-process store (memory) or the Redis store
// (redis, at REDIS_URL). Prints {"port":N}; answers 'cpu' messages with its
// process.cpuUsage().
import Fastify from 'fastify'
import Redis from 'ioredis'
import fastifyWsGate, { accept, redisLimitStore } from '../../dist/index.js'

const kind = process.env.LIMIT_STORE
const client = kind === 'redis' ? new Redis(process.env.REDIS_URL) : undefined
const app = Fastify()
await app.register(fastifyWsGate, kind === 'redis' ? { connectionLimits: { store: redisLimitStore({ client }) } } : {})
app.get('/ws', {
  websocket: true,
  handshake: () => accept(),
  ...(kind !== 'none' && { connectionLimit: { key: (request) => `user:${request.headers['x-user']}`, max: 1000 } })
}, () => {})
await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(JSON.stringify({ port: app.server.address().port }) + '\n')
process.on('message', () => { process.send(process.cpuUsage()) })
