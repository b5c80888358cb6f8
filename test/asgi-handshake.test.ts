// asgi(): the scope, and the handshake half of the ASGI message protocol,
// including the denial-response extension, pinned on the wire.
import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:net'
import Fastify from 'fastify'
import t from 'tap'
import WebSocket from 'ws'
import fastifyWsGate, { asgi, type AsgiApp, type AsgiSend, type FastifyWsGateOptions, type AsgiReceiveMessage, type WebSocketScope } from '../lib/index.js'
import { percentDecode } from '../lib/asgi/scope.js'
import { ACCEPT, collect, connectWs, denied, eventually, opened, parseRaw, rawExchange, stableHead, start, upgradeAndWait, upgradeRequest, wait } from './helpers.js'

async function serve (t: tap.Test, app: AsgiApp, options: Parameters<typeof asgi>[1] = {}, plugin: FastifyWsGateOptions = {}) {
  return start(t, (fastify) => {
    fastify.get('/live/*', asgi(app, options))
  }, plugin)
}

function settle<T> () {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((_resolve) => { resolve = _resolve })
  return { promise, resolve }
}

t.test('the scope, field for field', async (t) => {
  const seen = settle<WebSocketScope>()
  const { port } = await serve(t, async (scope, receive, send) => {
    seen.resolve(scope)
    await receive()
    await send({ type: 'websocket.close' })
  }, { rootPath: '/mount' })
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const request = Buffer.concat([
    Buffer.from('GET /live/one%2Ftwo/caf%C3%A9?token=a%20b&x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: p1, p2\r\nX-Dup: 1\r\nUsername: '),
    Buffer.from('abraão', 'utf8'),
    Buffer.from('\r\nx-dup: 2\r\n\r\n')
  ])
  const clientPort = socket.localPort
  const result = collect(socket, request, 2000)
  const scope = await seen.promise
  await result
  t.equal(scope.type, 'websocket')
  t.strictSame(scope.asgi, { version: '3.0', spec_version: '2.4' })
  t.equal(scope.http_version, '1.1')
  t.equal(scope.scheme, 'ws')
  t.equal(scope.path, '/live/one/two/café', 'percent-decoded as UTF-8')
  t.strictSame(scope.raw_path, Buffer.from('/live/one%2Ftwo/caf%C3%A9'))
  t.strictSame(scope.query_string, Buffer.from('token=a%20b&x=1'))
  t.equal(scope.root_path, '/mount')
  t.strictSame(scope.headers, [
    [Buffer.from('host'), Buffer.from('127.0.0.1')],
    [Buffer.from('upgrade'), Buffer.from('websocket')],
    [Buffer.from('connection'), Buffer.from('Upgrade')],
    [Buffer.from('sec-websocket-key'), Buffer.from('dGhlIHNhbXBsZSBub25jZQ==')],
    [Buffer.from('sec-websocket-version'), Buffer.from('13')],
    [Buffer.from('sec-websocket-protocol'), Buffer.from('p1, p2')],
    [Buffer.from('x-dup'), Buffer.from('1')],
    [Buffer.from('username'), Buffer.from('abraão', 'utf8')],
    [Buffer.from('x-dup'), Buffer.from('2')]
  ])
  t.equal(scope.client?.[0], '127.0.0.1')
  t.equal(scope.client?.[1], clientPort)
  t.strictSame(scope.server, ['127.0.0.1', port])
  t.strictSame(scope.subprotocols, ['p1', 'p2'])
  t.strictSame(scope.extensions, { 'websocket.http.response': {} })
})

t.test('percent-decoding never throws: a stray % stays, bytes that are not UTF-8 become U+FFFD', async (t) => {
  t.equal(percentDecode('/plain'), '/plain')
  t.equal(percentDecode('/a%zz%2'), '/a%zz%2')
  t.equal(percentDecode('/caf%C3%A9%20x'), '/café x')
  t.equal(percentDecode('/bad%FF'), '/bad\ufffd')
})

t.test('receive() starts with websocket.connect; accept gives a 101 with the subprotocol and headers, in order', async (t) => {
  const first = settle<AsgiReceiveMessage>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    first.resolve(await receive())
    await send({
      type: 'websocket.accept',
      subprotocol: 'p2',
      headers: [[Buffer.from('Server'), Buffer.from('over-ridden')], ['Server', 'another-value'], ['set-cookie', 'a=1']]
    })
  })
  const { text } = await rawExchange(port, upgradeRequest('/live/x', { 'Sec-WebSocket-Protocol': 'p1, p2' }), 300)
  t.strictSame(await first.promise, { type: 'websocket.connect' })
  const { statusLine, headerLines } = parseRaw(text)
  t.equal(statusLine, 'HTTP/1.1 101 Switching Protocols')
  t.strictSame(headerLines, [
    'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${ACCEPT}`, 'Sec-WebSocket-Protocol: p2',
    'Server: over-ridden', 'Server: another-value', 'set-cookie: a=1'
  ])
})

t.test('accept without subprotocol (or null) sends none', async (t) => {
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept', subprotocol: null })
  })
  const { text } = await rawExchange(port, upgradeRequest('/live/x', { 'Sec-WebSocket-Protocol': 'p1' }), 300)
  t.strictSame(parseRaw(text).headerLines, ['Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${ACCEPT}`])
  const outcome = opened(await connectWs(port, '/live/x'))
  t.equal(outcome.protocol, '')
  outcome.ws.close()
})

t.test('websocket.close before accept is 403 with an empty body; the next receive is a 1006 disconnect', async (t) => {
  const after = settle<AsgiReceiveMessage>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.close', code: 4001, reason: 'not sent anywhere' })
    after.resolve(await receive())
  })
  const res = await rawExchange(port, upgradeRequest('/live/x'))
  const { statusLine, headerLines, body } = parseRaw(res.text)
  t.equal(statusLine, 'HTTP/1.1 403 Forbidden')
  t.strictSame(stableHead(headerLines), ['Content-Length: 0', 'Date: <date>', 'Connection: close'])
  t.equal(body, '')
  t.equal(res.closed, true)
  t.strictSame(await after.promise, { type: 'websocket.disconnect', code: 1006 })
})

t.test('the denial response: status and headers at start, the body chunked as it comes, then a 1006 disconnect', async (t) => {
  const go = settle<void>()
  const after = settle<AsgiReceiveMessage[]>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 401, headers: [['www-authenticate', 'Bearer'], [Buffer.from('X-Bytes'), Buffer.from([0x63, 0x61, 0x66, 0xe9])]] })
    await go.promise
    await send({ type: 'websocket.http.response.body', body: 'token ', more_body: true })
    await send({ type: 'websocket.http.response.body', body: new Uint8Array(Buffer.from('required')) })
    after.resolve([await receive(), await receive()])
  })
  const { socket, first: head } = await upgradeAndWait(port, '/live/x')
  const early = parseRaw(head.toString('latin1'))
  t.equal(early.statusLine, 'HTTP/1.1 401 Unauthorized', 'the head is on the wire before any body was sent')
  t.strictSame(stableHead(early.headerLines), ['www-authenticate: Bearer', 'X-Bytes: caf\u00e9', 'Transfer-Encoding: chunked', 'Date: <date>', 'Connection: close'])
  t.equal(early.body, '')
  go.resolve()
  const rest = await collect(socket, null, 2000)
  t.equal(rest.text, '6\r\ntoken \r\n8\r\nrequired\r\n0\r\n\r\n')
  t.equal(rest.closed, true)
  t.strictSame(await after.promise, [{ type: 'websocket.disconnect', code: 1006 }, { type: 'websocket.disconnect', code: 1006 }], 'every later receive is the disconnect')
})

t.test('a denial with the app\'s own Content-Length is sent unchunked (as Starlette\'s Response does)', async (t) => {
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 400, headers: [[Buffer.from('Content-Length'), Buffer.from('20')], ['Content-Type', 'text/plain']] })
    await send({ type: 'websocket.http.response.body', body: Buffer.alloc(10, 'x'), more_body: true })
    await send({ type: 'websocket.http.response.body', body: Buffer.alloc(10, 'y') })
  })
  const res = await rawExchange(port, upgradeRequest('/live/x'))
  const { statusLine, headerLines, body } = parseRaw(res.text)
  t.equal(statusLine, 'HTTP/1.1 400 Bad Request')
  t.strictSame(stableHead(headerLines), ['Content-Length: 20', 'Content-Type: text/plain', 'Date: <date>', 'Connection: close'])
  t.equal(body, 'xxxxxxxxxxyyyyyyyyyy')
  t.equal(res.closed, true)
  const ws = denied(await connectWs(port, '/live/x'))
  t.equal(ws.statusCode, 400)
  t.equal(ws.body, 'xxxxxxxxxxyyyyyyyyyy')
})

t.test('a body that does not match its Content-Length is cut short and logged, never over-sent', async (t) => {
  const { port, logs } = await serve(t, async (scope, receive, send) => {
    await receive()
    const long = scope.query_string.toString() === 'long'
    await send({ type: 'websocket.http.response.start', status: 400, headers: [['content-length', '5']] })
    await send({ type: 'websocket.http.response.body', body: long ? '123456' : '123' })
  })
  for (const [query, message] of [['long', 'the body is longer than its Content-Length of 5'], ['short', 'the body ended 2 bytes short of its Content-Length of 5']]) {
    logs.length = 0
    const res = await rawExchange(port, upgradeRequest(`/live/x?${query}`))
    t.equal(parseRaw(res.text).body, query === 'long' ? '' : '123')
    t.equal(res.closed, true)
    t.ok(await eventually(() => logs.some((line) => line.level === 50), 1000))
    const err = logs.find((line) => line.level === 50)?.err as { code: string, message: string }
    t.equal(err.code, 'FST_WS_GATE_BODY_STREAM_ERROR')
    t.match(err.message, message)
  }
})

t.test('a 204 denial carries no body and no Content-Length, whatever the app sends; receive does not wait for its body', async (t) => {
  const after = settle<AsgiReceiveMessage>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 204, headers: [['x-a', '1'], ['content-length', '5']] })
    after.resolve(await receive())
    await send({ type: 'websocket.http.response.body', body: 'dropped', more_body: true })
    await send({ type: 'websocket.http.response.body', body: 'dropped too' })
  })
  const res = await rawExchange(port, upgradeRequest('/live/x'))
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 204 No Content')
  t.strictSame(stableHead(parseRaw(res.text).headerLines), ['x-a: 1', 'Date: <date>', 'Connection: close'])
  t.equal(parseRaw(res.text).body, '')
  t.strictSame(await after.promise, { type: 'websocket.disconnect', code: 1006 })
})

// Each rule: what the app sends, how send() must fail, what the client sees.
const rules: Array<[string, AsgiApp, string | RegExp, number]> = [
  ['send before the handshake', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.send', text: '123' })
  }, "Expected ASGI message 'websocket.accept', 'websocket.close' or 'websocket.http.response.start' but got 'websocket.send'.", 500],
  ['an unknown message type', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.nonsense' } as never)
  }, "Expected ASGI message 'websocket.accept', 'websocket.close' or 'websocket.http.response.start' but got 'websocket.nonsense'.", 500],
  ['a second http.response.start', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 404 })
    await send({ type: 'websocket.http.response.start', status: 500 })
  }, "Expected ASGI message 'websocket.http.response.body' but got 'websocket.http.response.start'.", 404],
  ['a message after the denial is complete', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 404 })
    await send({ type: 'websocket.http.response.body', body: 'gone' })
    await send({ type: 'websocket.send', text: 'late' })
  }, "Unexpected ASGI message 'websocket.send', after sending 'websocket.close' or response already completed.", 404],
  ['a message after close-before-accept', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.close' })
    await send({ type: 'websocket.accept' })
  }, "Unexpected ASGI message 'websocket.accept', after sending 'websocket.close' or response already completed.", 403],
  ['status 700', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 700 })
  }, 'A denial status must be an integer from 200 to 599, got 700', 500],
  ['status 101', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 101 })
  }, 'A denial status must be an integer from 200 to 599, got 101', 500],
  ['a header with CR LF', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 401, headers: [['x-a', 'a\r\nb']] })
  }, /^Invalid header x-a: the value contains CR, LF/, 500],
  ['a Content-Length with a no-break space', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 401, headers: [['content-length', '5\u00a0']] })
  }, 'Invalid header content-length: "5\u00a0" is not one valid length', 500],
  ['two different Content-Lengths', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 401, headers: [['content-length', '1'], ['content-length', '2']] })
  }, 'Invalid header content-length: "2" is not one valid length', 500],
  ['a Transfer-Encoding header', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 401, headers: [['transfer-encoding', 'chunked']] })
  }, /^Header transfer-encoding belongs to the handshake/, 500],
  ['a header that is not a pair', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 401, headers: [['x-a'] as never] })
  }, /each ASGI header must be a \[name, value\] pair/, 500],
  ['accept with sec-websocket-protocol in headers', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept', headers: [['sec-websocket-protocol', 'p1']] })
  }, /^Header sec-websocket-protocol belongs to the handshake/, 500],
  ['accept with a subprotocol the client did not offer', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept', subprotocol: 'p9' })
  }, 'Subprotocol "p9" was not offered by the client (offered: p1)', 500],
  ['a body that is a number', async (_s, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 401 })
    await send({ type: 'websocket.http.response.body', body: 42 as never })
  }, 'Invalid ASGI message \'websocket.http.response.body\': "body" must be bytes or a string', 401],
  ['a message that is not an object', async (_s, receive, send) => {
    await receive()
    await send(null as never)
  }, 'Invalid ASGI message null: expected an object with a string "type"', 500]
]

t.test('every out-of-order, unknown or invalid message makes send() reject, and nothing invalid reaches the wire', async (t) => {
  const errors = new Map<string, Error>()
  const apps = new Map(rules.map(([name, app]) => [name, app]))
  const { port } = await start(t, (fastify) => {
    fastify.setErrorHandler((_err, _request, reply) => { reply.code(500).send('app died') })
    fastify.get('/live/*', asgi(async (scope, receive, send) => {
      const name = decodeURIComponent(scope.query_string.toString())
      try {
        await (apps.get(name) as AsgiApp)(scope, receive, send)
      } catch (err) {
        errors.set(name, err as Error)
        throw err
      }
    }))
  })
  for (const [name, , message, status] of rules) {
    const res = await rawExchange(port, upgradeRequest(`/live/x?${encodeURIComponent(name)}`, { 'Sec-WebSocket-Protocol': 'p1' }))
    t.match(parseRaw(res.text).statusLine, new RegExp(`^HTTP/1\\.1 ${status} `), `${name}: client sees ${status}`)
    t.notMatch(res.text, /101 Switching|\r\n\r\n.*HTTP\/1\.1/s, `${name}: one response, no 101`)
    t.equal(res.closed, true)
    const err = errors.get(name)
    if (typeof message === 'string') t.equal(err?.message, message, name)
    else t.match(err?.message, message, name)
  }
})

t.test('an app that returns before deciding: 500 and one error line', async (t) => {
  const { port, logs } = await serve(t, async (_scope, receive) => { await receive() })
  const res = await rawExchange(port, upgradeRequest('/live/x'))
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 500 Internal Server Error')
  t.equal(parseRaw(res.text).body, '{"statusCode":500,"error":"Internal Server Error","message":"Internal Server Error"}')
  const errors = logs.filter((line) => line.level >= 50)
  t.equal(errors.length, 1)
  t.equal((errors[0].err as { code: string }).code, 'FST_WS_GATE_ASGI_NO_DECISION')
  t.equal((errors[0].err as { message: string }).message, 'ASGI callable returned without completing handshake.')
})

t.test('an app that raises before deciding goes through the error handler: 500 by default', async (t) => {
  const { port } = await serve(t, () => { throw new Error('sync boom') })
  const sync = parseRaw((await rawExchange(port, upgradeRequest('/live/x'))).text)
  t.equal(sync.statusLine, 'HTTP/1.1 500 Internal Server Error')
  t.equal(sync.body, '{"statusCode":500,"error":"Internal Server Error","message":"sync boom"}')
})

t.test('an app that returns mid-response: the response is cut short and logged', async (t) => {
  const { port, logs } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 503 })
    await send({ type: 'websocket.http.response.body', body: 'part', more_body: true })
  })
  const res = await rawExchange(port, upgradeRequest('/live/x'))
  t.equal(parseRaw(res.text).body, '4\r\npart\r\n')
  t.ok(await eventually(() => logs.some((line) => line.level === 50), 1000))
  t.match((logs.find((line) => line.level === 50)?.err as { message: string }).message, /ASGI callable returned without completing the denial response/)
})

t.test('an app that raises mid-response, or after a 204: cut short or logged', async (t) => {
  const { port, logs } = await serve(t, async (scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: scope.query_string.toString() === '204' ? 204 : 503 })
    await send({ type: 'websocket.http.response.body', body: 'part', more_body: true })
    throw new Error('mid-body')
  })
  for (const query of ['503', '204']) {
    logs.length = 0
    const res = await rawExchange(port, upgradeRequest(`/live/x?${query}`))
    t.equal(parseRaw(res.text).body, query === '503' ? '4\r\npart\r\n' : '')
    t.ok(await eventually(() => logs.some((line) => line.level === 50), 1000))
    t.match((logs.find((line) => line.level === 50)?.err as { message: string }).message, /mid-body/)
  }
})

t.test('a client that leaves during the handshake: the pending receive resolves to a 1006 disconnect', async (t) => {
  const got = settle<AsgiReceiveMessage>()
  const sent = settle<Error>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    got.resolve(await receive())
    await send({ type: 'websocket.accept' }).catch((err: Error) => sent.resolve(err))
  })
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(upgradeRequest('/live/x'))
  await wait(50)
  socket.destroy()
  t.strictSame(await got.promise, { type: 'websocket.disconnect', code: 1006 })
  const err = await sent.promise
  t.equal((err as { code?: string }).code, 'FST_WS_GATE_ASGI_CLIENT_DISCONNECTED')
  t.equal(err.message, "The client has disconnected; 'websocket.accept' cannot be sent")
})

t.test('a handshake timeout: 503 for the client, a 1006 disconnect for the app', async (t) => {
  const got = settle<AsgiReceiveMessage>()
  const { port } = await serve(t, async (_scope, receive) => {
    await receive()
    got.resolve(await receive())
  }, { handshakeTimeout: 50 })
  const res = await rawExchange(port, upgradeRequest('/live/x'))
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.strictSame(await got.promise, { type: 'websocket.disconnect', code: 1006 })
})

t.test('a client that leaves mid-response: the app\'s next send rejects and receive says 1006', async (t) => {
  const go = settle<void>()
  const sent = settle<unknown>()
  const got = settle<AsgiReceiveMessage>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 503 })
    await go.promise
    sent.resolve(await send({ type: 'websocket.http.response.body', body: 'x', more_body: true }).catch((err: unknown) => err))
    got.resolve(await receive())
  })
  const { socket } = await upgradeAndWait(port, '/live/x')
  socket.destroy()
  await wait(50)
  go.resolve()
  t.equal((await sent.promise as { code?: string }).code, 'FST_WS_GATE_ASGI_CLIENT_DISCONNECTED')
  t.strictSame(await got.promise, { type: 'websocket.disconnect', code: 1006 })
})

t.test('asgi() refuses what is not an application', async (t) => {
  t.throws(() => asgi('app' as never), { code: 'FST_WS_GATE_INVALID_OPTION' })
  t.throws(() => asgi(async () => {}, { rootPath: 1 as never }), { code: 'FST_WS_GATE_INVALID_OPTION', message: /rootPath of asgi\(\): must be a string/ })
})

t.test('asgi() works with app.route, and its handshakeTimeout overrides the plugin\'s', async (t) => {
  const { port } = await start(t, (fastify) => {
    fastify.route({ method: 'GET', url: '/r', ...asgi(async () => { await new Promise(() => {}) }, { handshakeTimeout: 30 }) })
  }, { handshakeTimeout: 60_000 })
  const res = parseRaw((await rawExchange(port, upgradeRequest('/r'), 2000)).text)
  t.equal(res.statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.match(res.body, /within 30 ms/)
})

t.test('a refused decision is logged once, even when the app lets send\'s rejection propagate', async (t) => {
  const { port, logs } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 700 })
  })
  const res = await rawExchange(port, upgradeRequest('/live/x'))
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 500 Internal Server Error')
  await wait(50)
  t.equal(logs.filter((line) => line.level >= 50).length, 1)
})

t.test('sends after the app returned, raised, or had a decision refused', async (t) => {
  const sends = new Map<string, AsgiSend>()
  const { port } = await start(t, (fastify) => {
    fastify.setErrorHandler((_err, _request, reply) => { reply.code(500).send('raised') })
    fastify.get('/live', asgi(async (scope, receive, send) => {
      const kind = scope.query_string.toString()
      sends.set(kind, send)
      await receive()
      if (kind === 'raised') throw new Error('raised')
      if (kind === 'refused') await send({ type: 'websocket.http.response.start', status: 99 }).catch(() => {})
    }))
  })
  for (const kind of ['returned', 'raised', 'refused']) {
    await rawExchange(port, upgradeRequest(`/live?${kind}`))
    const err = await (sends.get(kind) as AsgiSend)({ type: 'websocket.accept' }).catch((err: Error) => err) as Error
    t.equal(err.message, "Unexpected ASGI message 'websocket.accept', after sending 'websocket.close' or response already completed.", kind)
  }
})

t.test('denial body backpressure: a send resolves only once the engine has taken its chunk', async (t) => {
  const states: string[] = []
  const second = settle<void>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 503 })
    await send({ type: 'websocket.http.response.body', body: Buffer.alloc(16 * 1024 * 1024, 'a'), more_body: true })
    states.push('first taken')
    await send({ type: 'websocket.http.response.body', body: Buffer.alloc(16 * 1024 * 1024, 'b'), more_body: true })
    states.push('second taken')
    second.resolve()
    await send({ type: 'websocket.http.response.body', body: 'end' })
  }, {}, { denialMaxBodySize: 64 * 1024 * 1024 })
  const { socket } = await upgradeAndWait(port, '/live/x')
  socket.pause()
  await wait(300)
  t.strictSame(states, ['first taken'], 'while the client does not read, the second chunk waits')
  socket.resume()
  socket.on('data', () => {})
  await second.promise
  t.strictSame(states, ['first taken', 'second taken'])
  socket.destroy()
})

t.test('a final body message may omit the body', async (t) => {
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.http.response.start', status: 410 })
    await send({ type: 'websocket.http.response.body', body: 'gone', more_body: true })
    await send({ type: 'websocket.http.response.body' })
  })
  const res = parseRaw((await rawExchange(port, upgradeRequest('/live/x'))).text)
  t.equal(res.statusLine, 'HTTP/1.1 410 Gone')
  t.equal(res.body, '4\r\ngone\r\n0\r\n\r\n')
})

t.test('on a Unix socket, client and server are null', async (t) => {
  const path = join(mkdtempSync(join(tmpdir(), 'ws-gate-unix-')), 'gate.sock')
  const seen = settle<WebSocketScope>()
  const app = Fastify()
  await app.register(fastifyWsGate)
  app.get('/live', asgi(async (scope, receive, send) => {
    seen.resolve(scope)
    await receive()
    await send({ type: 'websocket.close' })
  }))
  await app.listen({ path })
  t.teardown(() => app.close())
  const socket = connect(path)
  await once(socket, 'connect')
  const res = await collect(socket, upgradeRequest('/live'), 2000)
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 403 Forbidden')
  const scope = await seen.promise
  t.equal(scope.client, null)
  t.equal(scope.server, null)
})

t.test('when ws itself refuses the upgrade (a malformed extension offer), the app hears 1006', async (t) => {
  const seen = settle<AsgiReceiveMessage>()
  const { port } = await start(t, (fastify) => {
    fastify.get('/live', asgi(async (_scope, receive, send) => {
      await receive()
      await send({ type: 'websocket.accept' })
      seen.resolve(await receive())
    }))
  }, { websocket: { options: { perMessageDeflate: true } } })
  const res = await rawExchange(port, upgradeRequest('/live', { 'Sec-WebSocket-Extensions': 'permessage-deflate; =' }))
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 400 Bad Request')
  t.strictSame(await seen.promise, { type: 'websocket.disconnect', code: 1006 })
})

t.test('over TLS the scheme is wss', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ws-gate-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-days', '1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
  t.equal(made.status, 0, 'openssl made a self-signed certificate')
  const seen = settle<WebSocketScope>()
  const { port } = await start(t, (fastify) => {
    fastify.get('/live', asgi(async (scope, receive, send) => {
      seen.resolve(scope)
      await receive()
      await send({ type: 'websocket.accept' })
    }))
  }, {}, { https: { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) } } as never)
  const ws = new WebSocket(`wss://127.0.0.1:${port}/live`, { rejectUnauthorized: false })
  await once(ws, 'open')
  t.equal((await seen.promise).scheme, 'wss')
  ws.close()
})
