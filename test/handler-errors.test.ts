// Contract point 6: an error thrown or rejected by the handshake handler goes
// through the app's Fastify error handler, as in any route.
import createError from '@fastify/error'
import t from 'tap'
import { parseRaw, rawExchange, stableHead, start, upgradeRequest } from './helpers.js'

const Unauthorized = createError('APP_UNAUTHORIZED', 'Token expired', 401)

function routes (handshake: () => unknown) {
  return (app: import('fastify').FastifyInstance) => {
    app.get('/e', { websocket: true, handshake: handshake as never }, () => { throw new Error('the WebSocket handler must not run') })
  }
}

for (const [kind, handshake] of [
  ['sync throw', () => { throw new Error('boom') }],
  ['async rejection', async () => { throw new Error('boom') }],
  ['a thenable whose then() throws', () => ({ then () { throw new Error('boom') } })]
] as const) {
  t.test(`${kind}: Fastify's default error handler answers 500 and logs it`, async (t) => {
    const { app, port, logs } = await start(t, routes(handshake))
    const res = await rawExchange(port, upgradeRequest('/e'))
    const { statusLine, headerLines, body } = parseRaw(res.text)
    const expected = '{"statusCode":500,"error":"Internal Server Error","message":"boom"}'
    t.equal(statusLine, 'HTTP/1.1 500 Internal Server Error')
    t.strictSame(stableHead(headerLines), [
      'content-type: application/json; charset=utf-8', `content-length: ${expected.length}`, 'connection: close', 'Date: <date>'
    ])
    t.equal(body, expected)
    t.equal(res.closed, true, 'the connection is closed after the error response')
    const errors = logs.filter((line) => line.level >= 50)
    t.equal(errors.length, 1)
    t.equal((errors[0].err as { message: string }).message, 'boom')
    // The handshake was settled, so shutdown finds nothing pending to answer.
    await app.close()
    t.equal(logs.filter((line) => line.msg === 'handshake answered 503: the server is shutting down').length, 0)
    t.equal(app.wsGate.pending, 0)
  })
}

t.test('an error with a statusCode is honoured (e.g. from @fastify/error)', async (t) => {
  const { port } = await start(t, routes(async () => { throw new Unauthorized() }))
  const { statusLine, body } = parseRaw((await rawExchange(port, upgradeRequest('/e'))).text)
  t.equal(statusLine, 'HTTP/1.1 401 Unauthorized')
  t.equal(body, '{"statusCode":401,"code":"APP_UNAUTHORIZED","error":"Unauthorized","message":"Token expired"}')
})

t.test('setErrorHandler applies to handshake errors', async (t) => {
  const { port } = await start(t, (app) => {
    app.setErrorHandler((err, _request, reply) => {
      reply.code(418).header('x-handled', 'yes').send({ custom: (err as Error).message })
    })
    routes(() => { throw new Error('teapot') })(app)
  })
  const { statusLine, headerLines, body } = parseRaw((await rawExchange(port, upgradeRequest('/e'))).text)
  t.equal(statusLine, 'HTTP/1.1 418 I\'m a Teapot')
  t.ok(headerLines.includes('x-handled: yes'))
  t.ok(headerLines.includes('connection: close'))
  t.equal(body, '{"custom":"teapot"}')
})

t.test('an encapsulated error handler applies to routes in its context', async (t) => {
  const { port } = await start(t, async (app) => {
    await app.register(async (child) => {
      child.setErrorHandler((_err, _request, reply) => { reply.code(409).send('child handler') })
      routes(() => { throw new Error('x') })(child)
    }, { prefix: '/child' })
  })
  const { statusLine, body } = parseRaw((await rawExchange(port, upgradeRequest('/child/e'))).text)
  t.equal(statusLine, 'HTTP/1.1 409 Conflict')
  t.equal(body, 'child handler')
})

for (const [kind, value, shown] of [
  ['a string', 'oops', 'string'],
  ['undefined', undefined, 'undefined'],
  ['null', null, 'null']
] as const) {
  t.test(`throwing ${kind} is wrapped in an error, never sent as a payload`, async (t) => {
    const { port, logs } = await start(t, routes(async () => { throw value }))
    const { statusLine, body } = parseRaw((await rawExchange(port, upgradeRequest('/e'))).text)
    t.equal(statusLine, 'HTTP/1.1 500 Internal Server Error')
    t.equal(body, JSON.stringify({
      statusCode: 500,
      code: 'FST_WS_GATE_NON_ERROR_THROWN',
      error: 'Internal Server Error',
      message: `The handshake handler threw a value that is not an Error: ${shown}`
    }))
    t.equal(logs.filter((line) => line.level >= 50).length, 1)
  })
}
