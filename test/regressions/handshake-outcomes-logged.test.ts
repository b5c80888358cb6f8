// Issue 17, item 13: a handshake the gate rejected or refused left nothing at
// `info`, while a hook's 401 on the same route did ("request completed"). Each
// routed handshake's outcome is now logged once at info, in Fastify's shape
// (res.statusCode, responseTime), and not at all when request logging is off.
import Fastify, { LogController, type FastifyServerOptions } from 'fastify'
import t from 'tap'
import fastifyWsGate, { accept, reject } from '../../lib/index.js'
import { connectWs, denied, eventually, opened, type LogLine } from '../helpers.js'

async function app (t: tap.Test, serverOptions: FastifyServerOptions = {}): Promise<{ port: number, logs: LogLine[] }> {
  const logs: LogLine[] = []
  const app = Fastify({ ...serverOptions, logger: { level: 'info', stream: { write: (line: string) => { logs.push(JSON.parse(line)) } } } })
  await app.register(fastifyWsGate, { allowedOrigins: ['https://good.example'] })
  app.addHook('onRequest', async (request, reply) => { if (request.url === '/hooked') await reply.code(401).send('no') })
  app.get('/hooked', { websocket: true, handshake: () => accept() }, () => {})
  app.get('/denied', { websocket: true, handshake: () => reject(401, 'Bad token') }, () => {})
  app.get('/accepted', { websocket: true, handshake: () => accept() }, () => {})
  app.get('/plain', { websocket: true }, () => {})
  app.get('/refused', { websocket: true, rejectVia: 'close-frame', handshake: () => reject(429) }, () => {})
  app.get('/http', async () => 'http')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { port: (app.server.address() as { port: number }).port, logs }
}

// The "request completed" lines, by request id: [statusCode, has a responseTime].
function completed (logs: LogLine[]): Array<[number, boolean]> {
  return logs.filter((line) => line.msg === 'request completed')
    .map((line) => [(line.res as { statusCode: number }).statusCode, typeof line.responseTime === 'number'])
}

t.test('each routed handshake logs "request completed" once at info, as a hook\'s reply does', async (t) => {
  const { port, logs } = await app(t)
  const cases: Array<[string, number, Record<string, string>?]> = [
    ['/hooked', 401],
    ['/denied', 401],
    ['/accepted', 101],
    ['/plain', 101],
    ['/refused', 101],
    ['/http', 400],
    ['/accepted', 403, { Origin: 'https://evil.example' }]
  ]
  for (const [path, status, headers] of cases) {
    const before = logs.length
    const outcome = await connectWs(port, path, { headers })
    if (outcome.accepted) outcome.ws.close()
    else t.equal(outcome.statusCode, status, path)
    t.ok(await eventually(() => completed(logs.slice(before)).length === 1, 1000), `${path}: one line`)
    t.strictSame(completed(logs.slice(before)), [[status, true]], `${path}: ${status}`)
    const line = logs.slice(before).find((line) => line.msg === 'request completed') as LogLine
    t.equal(line.level, 30)
    t.equal(line.reqId, logs.slice(before).find((line) => line.msg === 'incoming request')?.reqId, 'the request\'s own logger')
  }
})

t.test('disableRequestLogging (the option, or a LogController) turns them off, as it does Fastify\'s own', async (t) => {
  for (const options of [{ disableRequestLogging: true }, { logController: new LogController({ disableRequestLogging: true }) }] as FastifyServerOptions[]) {
    const { port, logs } = await app(t, options)
    t.equal(denied(await connectWs(port, '/denied')).statusCode, 401)
    const ok = opened(await connectWs(port, '/accepted'))
    ok.ws.close()
    t.equal(denied(await connectWs(port, '/hooked')).statusCode, 401)
    t.strictSame(logs.filter((line) => line.msg === 'request completed' || line.msg === 'incoming request'), [])
  }
})
