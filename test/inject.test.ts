// app.injectHandshake(): a handshake without a listening socket, through the
// same path as a real upgrade, with a real ws client on an in-memory connection.
import { once } from 'node:events'
import { Readable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import fastifyWsGate, { accept, asgi, reject, type InjectedHandshake } from '../lib/index.js'

async function build (t: tap.Test, routes: (app: FastifyInstance) => void, options = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(fastifyWsGate, options)
  routes(app)
  t.teardown(() => app.close())
  return app
}

function denial (outcome: InjectedHandshake) {
  if (outcome.accepted) {
    outcome.socket.terminate()
    throw new Error('expected a denial, got a 101')
  }
  return outcome
}

function opened (outcome: InjectedHandshake) {
  if (!outcome.accepted) throw new Error(`expected a 101, got ${outcome.statusCode}: ${outcome.body}`)
  return outcome
}

t.test('accepted: the 101\'s protocol and headers, and a socket to talk to the route\'s handler; nothing listens', async (t) => {
  const seen: Array<{ ip: string, origin: string | undefined, room: unknown }> = []
  const app = await build(t, (app) => {
    app.get('/rooms/:room', {
      websocket: true,
      handshake: (request, { protocols }) => {
        seen.push({ ip: request.ip, origin: request.headers.origin, room: { ...request.query as object } })
        return accept({ protocol: protocols.includes('chat.v2') ? 'chat.v2' : undefined, headers: { 'Set-Cookie': 'seen=1' } })
      }
    }, (socket) => {
      socket.on('message', (data) => socket.send(`echo ${String(data)}`))
    })
  })
  // Before ready(): injectHandshake waits for it, as inject() does.
  const outcome = opened(await app.injectHandshake('/rooms/lobby', {
    protocols: ['chat.v1', 'chat.v2'], headers: { Origin: 'https://app.example' }, query: { token: 'a b', tag: ['x', 'y'] }
  }))
  t.equal(app.server.listening, false)
  t.equal(outcome.protocol, 'chat.v2')
  t.equal(outcome.headers['sec-websocket-protocol'], 'chat.v2')
  t.strictSame(outcome.headers['set-cookie'], ['seen=1'])
  t.strictSame(seen, [{ ip: '127.0.0.1', origin: 'https://app.example', room: { token: 'a b', tag: ['x', 'y'] } }])
  outcome.socket.send('hi')
  const [reply] = await once(outcome.socket, 'message')
  t.equal(String(reply), 'echo hi')
  // A message larger than a stream buffer crosses the in-memory connection whole.
  const big = 'x'.repeat(1024 * 1024)
  outcome.socket.send(big)
  const [echoed] = await once(outcome.socket, 'message')
  t.equal(String(echoed), `echo ${big}`)
  outcome.socket.close(1000)
  const [code] = await once(outcome.socket, 'close')
  t.equal(code, 1000)
})

t.test('denied: status, headers, body and json(), from the handshake, a hook, validation, the error handler and the router', async (t) => {
  const app = await build(t, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization === undefined && request.url.startsWith('/private')) {
        await reply.code(401).header('www-authenticate', 'Basic').send({ message: 'who are you?' })
      }
    })
    app.setErrorHandler((err, _request, reply) => {
      return reply.code(418).send({ handled: (err as Error).message })
    })
    const route = {
      websocket: true as const,
      schema: { querystring: { type: 'object', properties: { n: { type: 'integer' } } } },
      handshake: (request: { query: unknown }) => {
        const { n } = request.query as { n?: number }
        if (n === 13) throw new Error('unlucky')
        return n === 1 ? accept() : reject(401, 'Invalid token', { headers: { 'WWW-Authenticate': 'Bearer' } })
      }
    }
    app.get('/ws', route, () => {})
    app.get('/private/ws', route, () => {})
    app.get('/plain', () => 'not a websocket')
  })
  const rejected = denial(await app.injectHandshake('/ws?n=2', { query: 'extra=1' }))
  t.equal(rejected.statusCode, 401)
  t.equal(rejected.headers['www-authenticate'], 'Bearer')
  t.equal(rejected.headers.connection, 'close')
  t.equal(rejected.body, '{"statusCode":401,"error":"Unauthorized","message":"Invalid token"}')
  t.strictSame(rejected.json(), { statusCode: 401, error: 'Unauthorized', message: 'Invalid token' })

  const hook = denial(await app.injectHandshake('/private/ws?n=1'))
  t.equal(hook.statusCode, 401)
  t.equal(hook.headers['www-authenticate'], 'Basic')
  t.strictSame(hook.json(), { message: 'who are you?' })
  const authorized = opened(await app.injectHandshake('/private/ws?n=1', { headers: { Authorization: 'Basic eDp5' } }))
  authorized.socket.close()

  const invalid = denial(await app.injectHandshake('/ws', { query: { n: 'many' } }))
  t.equal(invalid.statusCode, 418)
  t.strictSame(invalid.json(), { handled: 'querystring/n must be integer' })
  const thrown = denial(await app.injectHandshake('ws', { query: '?n=13' }))
  t.equal(thrown.statusCode, 418)
  t.strictSame(thrown.json(), { handled: 'unlucky' })

  const plain = denial(await app.injectHandshake('/plain'))
  t.equal(plain.statusCode, 400)
  t.equal(plain.json<{ code: string }>().code, 'FST_WS_GATE_NOT_WEBSOCKET_ROUTE')
  t.equal(denial(await app.injectHandshake('/nowhere', { query: '' })).statusCode, 404)
})

t.test('the gate\'s own answers: a refused origin, the timeout, rejectVia close frames', async (t) => {
  const app = await build(t, (app) => {
    app.get('/guarded', { websocket: true, allowedOrigins: ['https://good.example'], handshake: () => accept() }, () => {})
    app.get('/slow', { websocket: true, handshakeTimeout: 30, handshake: () => new Promise<never>(() => {}) }, () => {})
    app.get('/frame', { websocket: true, rejectVia: 'auto', handshake: () => reject(404, 'No such room') }, () => {})
  })
  const origin = denial(await app.injectHandshake('/guarded', { headers: { Origin: 'https://evil.example' } }))
  t.equal(origin.statusCode, 403)
  t.equal(origin.json<{ code: string }>().code, 'FST_WS_GATE_ORIGIN_NOT_ALLOWED')
  const slow = denial(await app.injectHandshake('/slow'))
  t.equal(slow.statusCode, 503)
  t.equal(slow.headers['retry-after'], '5')
  // What a browser sees with rejectVia 'auto': a 101, then the close frame.
  const frame = opened(await app.injectHandshake('/frame', { headers: { Origin: 'https://good.example' } }))
  const [code, reason] = await once(frame.socket, 'close')
  t.equal(code, 4404)
  t.equal(String(reason), 'No such room')
})

t.test('request.ip is remoteAddress; an ASGI app sees it as its client', async (t) => {
  const ips: string[] = []
  const app = await build(t, (app) => {
    app.get('/ip', { websocket: true, handshake: (request) => { ips.push(request.ip); return reject(204) } }, () => {})
    app.get('/asgi', asgi(async (scope, receive, send) => {
      await receive()
      await send({ type: 'websocket.http.response.start', status: 200, headers: [['content-type', 'text/plain']] })
      await send({ type: 'websocket.http.response.body', body: JSON.stringify(scope.client) })
    }))
  })
  t.equal(denial(await app.injectHandshake('/ip', { remoteAddress: '203.0.113.7' })).statusCode, 204)
  t.strictSame(ips, ['203.0.113.7'])
  const scope = denial(await app.injectHandshake('/asgi'))
  t.equal(scope.statusCode, 200)
  t.equal(scope.body, 'null', 'an in-memory connection has no port, so the scope\'s client is null')
})

t.test('what a real client refuses rejects the promise: a 101 without the subprotocol it offered', async (t) => {
  const app = await build(t, (app) => {
    app.get('/none', { websocket: true, handshake: () => accept() }, () => {})
  })
  await t.rejects(app.injectHandshake('/none', { protocols: ['chat.v1'] }), { message: 'Server sent no subprotocol' })
})

t.test('app.close() closes injected connections with 1001', async (t) => {
  const app = Fastify()
  await app.register(fastifyWsGate)
  app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  const outcome = opened(await app.injectHandshake('/ws'))
  const closing = once(outcome.socket, 'close')
  await app.close()
  const [code] = await closing
  t.equal(code, 1001)
})

t.test('a denial cut short rejects the promise with the client\'s error', async (t) => {
  const app = await build(t, (app) => {
    app.get('/cut', {
      websocket: true,
      handshake: () => reject(500, undefined, {
        body: new Readable({
          read () {
            this.push('partial')
            this.destroy(new Error('source failed'))
          }
        })
      })
    }, () => {})
  })
  await t.rejects(app.injectHandshake('/cut'), { message: 'aborted' })
})
