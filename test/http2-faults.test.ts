// WebSockets over HTTP/2: what a client or the server can do to a handshake
// on one stream (reset it, lose its session, stall flow control, shut down),
// and every option the gate honours over HTTP/1.1, honoured here too.
import { once } from 'node:events'
import diagnostics from 'node:diagnostics_channel'
import http2 from 'node:http2'
import { Readable } from 'node:stream'
import Fastify from 'fastify'
import t from 'tap'
import fastifyWsGate, { accept, asgi, HANDSHAKE_CHANNEL, reject, type HandshakeEvent, type WebSocketScope } from '../lib/index.js'
import { eventually, logsAbove, start, wait } from './helpers.js'
import { h2connect, h2session, nextMessage } from './h2-helpers.js'

const H2 = { http2: true } as never
const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR } = http2.constants

function outcomes (t: { teardown (fn: () => void): void }): HandshakeEvent[] {
  const events: HandshakeEvent[] = []
  const listen = (event: unknown): void => { events.push(event as HandshakeEvent) }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, listen)
  t.teardown(() => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, listen) })
  return events
}

t.test('a stream reset while the decision is pending aborts it; the session and its other streams live on', async (t) => {
  const events = outcomes(t)
  let signal: AbortSignal | undefined
  const { port, app } = await start(t, (app) => {
    app.get('/slow', { websocket: true, handshake: (_request, context) => { signal = context.signal; return new Promise(() => {}) } }, () => {})
    app.get('/fast', { websocket: true }, (socket) => { socket.send('still here') })
  }, {}, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/slow', ':scheme': 'http', 'sec-websocket-version': '13' })
  stream.on('error', () => {})
  t.ok(await eventually(() => signal !== undefined && app.wsGate.pending === 1))
  stream.close(NGHTTP2_CANCEL)
  t.ok(await eventually(() => signal?.aborted === true && app.wsGate.pending === 0))
  t.same(events.map(({ outcome, status }) => [outcome, status]), [['aborted', null]])
  const other = await h2connect(session, '/fast')
  t.equal(await nextMessage(other.ws!), 'still here')
  other.ws!.close()
})

t.test('a session destroyed while decisions are pending aborts each of them', async (t) => {
  const signals: AbortSignal[] = []
  const { port, app } = await start(t, (app) => {
    app.get('/slow', { websocket: true, handshake: (_request, context) => { signals.push(context.signal); return new Promise(() => {}) } }, () => {})
  }, {}, H2)
  const session = await h2session(port)
  for (let i = 0; i < 3; i++) session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/slow', ':scheme': 'http', 'sec-websocket-version': '13' }).on('error', () => {})
  t.ok(await eventually(() => signals.length === 3 && app.wsGate.pending === 3))
  session.destroy()
  t.ok(await eventually(() => signals.every((signal) => signal.aborted) && app.wsGate.pending === 0))
})

t.test('a stream reset while the upgrade waits in an async hook is counted out', async (t) => {
  const events = outcomes(t)
  let hooked = false
  let signal: AbortSignal | undefined
  const { port, app, logs } = await start(t, (app) => {
    app.addHook('onRequest', async () => { hooked = true; await wait(200) })
    app.get('/ws', { websocket: true, allowedOrigins: ['https://a.example'] }, () => {})
    app.get('/decide', { websocket: true, handshake: (_request, context) => { signal = context.signal; return new Promise(() => {}) } }, () => {})
  }, {}, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/ws', ':scheme': 'http', 'sec-websocket-version': '13', origin: 'https://b.example' })
  stream.on('error', () => {})
  t.ok(await eventually(() => hooked))
  stream.close(NGHTTP2_CANCEL)
  t.ok(await eventually(() => app.wsGate.pending === 0))
  await wait(300)
  t.same(events.map(({ outcome, status }) => [outcome, status]), [['aborted', null]], 'the origin refusal after the hook finds the stream gone and writes nothing')
  hooked = false
  const decided = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/decide', ':scheme': 'http', 'sec-websocket-version': '13' })
  decided.on('error', () => {})
  t.ok(await eventually(() => hooked))
  decided.close(NGHTTP2_CANCEL)
  t.ok(await eventually(() => signal?.aborted === true), 'a handshake that starts after its client left aborts at once')
  t.equal(app.wsGate.pending, 0)
  t.same(logsAbove(logs, 40), [])
})

t.test('the scheme and authority an extended CONNECT must carry', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true }, () => {})
  }, {}, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const scheme = await h2connect(session, '/ws', { pseudo: { ':scheme': 'ftp' } })
  t.equal(scheme.status, 400)
  t.equal(JSON.parse(scheme.body).message, 'An extended CONNECT needs :scheme "https" or "http"')
  const authority = await h2connect(session, '/ws', { pseudo: { ':authority': '' } }).catch((err: Error) => err.message)
  t.equal(authority, 'stream closed before a response (code 1)', 'Node\'s HTTP/2 layer resets it with PROTOCOL_ERROR before the gate sees it')
})

t.test('a client that resets its stream during a streamed denial body: the body is destroyed, nothing is logged above debug', async (t) => {
  let destroyed = false
  const { port, logs } = await start(t, (app) => {
    app.get('/slow-body', {
      websocket: true,
      handshake: () => reject(403, undefined, { body: new Readable({ read () { this.push('x') }, destroy (err, cb) { destroyed = true; cb(err) } }) })
    }, () => {})
  }, { denialMaxBodySize: 1e9, denialTimeout: 0 }, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/slow-body', ':scheme': 'http', 'sec-websocket-version': '13' })
  stream.on('error', () => {})
  await once(stream, 'response')
  stream.close(NGHTTP2_CANCEL)
  t.ok(await eventually(() => destroyed && logs.some((line) => line.msg === 'client closed the stream during the denial body'), 2000))
  t.same(logsAbove(logs, 30), [])
})

t.test('shutdown: a pending handshake gets 503 with Retry-After, an open WebSocket 1001, the session a GOAWAY, and close() settles', async (t) => {
  const app = Fastify({ http2: true, forceCloseConnections: true })
  await app.register(fastifyWsGate)
  app.get('/slow', { websocket: true, handshake: () => new Promise(() => {}) }, () => {})
  app.get('/open', { websocket: true }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const session = await h2session((app.server.address() as { port: number }).port)
  t.teardown(() => session.destroy())
  const open = await h2connect(session, '/open')
  const pending = h2connect(session, '/slow')
  await eventually(() => app.wsGate.pending === 1)
  const closing = once(open.ws!, 'close')
  const goaway = once(session, 'goaway')
  const closed = app.close()
  const answer = await pending
  t.equal(answer.status, 503)
  t.equal(answer.headers['retry-after'], '5')
  t.equal(JSON.parse(answer.body).code, 'FST_WS_GATE_SHUTTING_DOWN')
  const [code] = await closing as [number]
  t.equal(code, 1001)
  await closed
  t.equal(app.server.listening, false, 'close() settled')
  const [errorCode] = await goaway as [number]
  t.equal(errorCode, http2.constants.NGHTTP2_NO_ERROR, 'the session got a GOAWAY (forceCloseConnections), once its WebSocket and handshake streams were answered')
})

t.test('handshakes that arrive during shutdown, or past maxPendingHandshakes, are answered before routing', async (t) => {
  const events = outcomes(t)
  const { port, app } = await start(t, (app) => {
    app.get('/slow', { websocket: true, handshake: () => new Promise(() => {}) }, () => {})
  }, { maxPendingHandshakes: 1, handshakeTimeout: 0 }, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const first = h2connect(session, '/slow')
  await eventually(() => app.wsGate.pending === 1)
  const shed = await h2connect(session, '/slow')
  t.equal(shed.status, 503)
  t.equal(shed.headers['retry-after'], '5')
  t.equal(JSON.parse(shed.body).code, 'FST_WS_GATE_OVERLOADED')
  t.equal(app.wsGate.shed, 1)
  // Without forceCloseConnections, Node 20 keeps the session open while the server closes.
  const closed = app.close()
  t.equal((await first).status, 503, 'the pending one is answered as shutdown begins')
  const late = await h2connect(session, '/slow')
  t.equal(late.status, 503)
  t.equal(JSON.parse(late.body).code, 'FST_WS_GATE_SHUTTING_DOWN')
  session.destroy()
  await closed
  t.same(events.map(({ outcome, status }) => [outcome, status]), [['shed', 503], ['rejected', 503], ['rejected', 503]])
})

t.test('permessage-deflate is negotiated per RFC 7692 over the stream when ws\'s option allows it', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/z', { websocket: true, handshake: () => accept() }, (socket) => {
      socket.on('message', (data) => { socket.send(data) })
    })
  }, { websocket: { options: { perMessageDeflate: true } } }, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const answer = await h2connect(session, '/z', { deflate: true })
  t.equal(answer.status, 200)
  t.equal(answer.headers['sec-websocket-extensions'], 'permessage-deflate', 'as ws answers this offer over HTTP/1.1')
  let received = 0
  answer.stream.on('data', (chunk: Buffer) => { received += chunk.length })
  const text = 'compress me '.repeat(1000)
  answer.ws!.send(text)
  t.equal(await nextMessage(answer.ws!), text)
  t.ok(received < 200, `the echo of 12,000 characters came compressed (${received} bytes)`)
  answer.ws!.close()
  const plain = await h2connect(session, '/z')
  t.equal(plain.headers['sec-websocket-extensions'], undefined)
  plain.ws!.close()
  const broken = await h2connect(session, '/z', { headers: { 'sec-websocket-extensions': 'permessage-deflate; server_max_window_bits=99' } })
  t.equal(broken.status, 400)
  t.equal(JSON.parse(broken.body).message, 'Invalid or unacceptable Sec-WebSocket-Extensions header')
})

t.test('rejectVia close-frame: :status 200, then close code 4000 + status', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/v', { websocket: true, rejectVia: 'close-frame', handshake: () => reject(403, 'not you') }, () => {})
  }, {}, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const answer = await h2connect(session, '/v')
  t.equal(answer.status, 200)
  const [code, reason] = await once(answer.ws!, 'close') as [number, Buffer]
  t.equal(code, 4403)
  t.equal(String(reason), 'not you')
})

t.test('verifyClient refuses over HTTP/2 with its own status, message and headers; a client gone meanwhile is counted out', async (t) => {
  const events = outcomes(t)
  let verified = 0
  const { port, app } = await start(t, (app) => {
    app.get('/v', { websocket: true, handshake: () => accept() }, () => {})
  }, {
    websocket: {
      options: {
        verifyClient: (info: { req: { headers: Record<string, string> } }, done: (ok: boolean, code?: number, message?: string, headers?: Record<string, string>) => void) => {
          setTimeout(() => { verified++; done(info.req.headers['x-ok'] === '1', 429, 'slow down', { 'Retry-After': '30' }) }, 100)
        }
      } as never
    }
  }, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const refused = await h2connect(session, '/v')
  t.equal(refused.status, 429)
  t.equal(refused.headers['retry-after'], '30')
  t.equal(refused.headers['content-type'], 'text/html')
  t.equal(refused.body, 'slow down')
  const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/v', ':scheme': 'http', 'sec-websocket-version': '13', 'x-ok': '1' })
  stream.on('error', () => {})
  await wait(30)
  stream.close(NGHTTP2_CANCEL)
  t.ok(await eventually(() => app.wsGate.pending === 0, 2000))
  t.ok(await eventually(() => verified === 2, 2000), 'verifyClient let the departed client in, and nothing was sent')
  t.same(events.map(({ outcome, status }) => [outcome, status]), [['rejected', 429], ['aborted', null]])
})

t.test('denials: no body, a body-less status, a streamed body, a body stream that fails, connection headers dropped, repeated headers kept', async (t) => {
  const { port, logs } = await start(t, (app) => {
    app.get('/plain', { websocket: true, handshake: () => reject(403) }, () => {})
    app.get('/empty', { websocket: true, handshake: () => reject(204) }, () => {})
    app.get('/headers', {
      websocket: true,
      handshake: () => reject(400, undefined, { headers: { 'keep-alive': 'timeout=5', 'x-a': ['1', '2', '3'], 'set-cookie': ['a=1', 'b=2'] } })
    }, () => {})
    app.get('/stream', { websocket: true, handshake: () => reject(451, undefined, { body: Readable.from(['part one, ', 'part two']) }) }, () => {})
    app.get('/broken', {
      websocket: true,
      handshake: () => reject(500, undefined, { body: new Readable({ read () { this.push('half'); this.destroy(new Error('disk gone')) } }) })
    }, () => {})
  }, {}, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const plain = await h2connect(session, '/plain')
  t.equal(plain.status, 403)
  t.equal(plain.headers['content-length'], '0')
  t.equal(plain.body, '')
  const empty = await h2connect(session, '/empty')
  t.equal(empty.status, 204)
  t.equal(empty.headers['content-length'], undefined)
  const headers = await h2connect(session, '/headers')
  t.equal(headers.status, 400)
  t.equal(headers.headers['keep-alive'], undefined)
  t.equal(headers.headers['x-a'], '1, 2, 3')
  t.same(headers.headers['set-cookie'], ['a=1', 'b=2'])
  const streamed = await h2connect(session, '/stream')
  t.equal(streamed.status, 451)
  t.equal(streamed.headers['content-length'], undefined)
  t.equal(streamed.headers['content-type'], 'application/octet-stream')
  t.equal(streamed.body, 'part one, part two')
  t.equal(await streamed.closed, NGHTTP2_NO_ERROR)
  const broken = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/broken', ':scheme': 'http', 'sec-websocket-version': '13' })
  broken.on('error', () => {})
  const brokenClosed = new Promise((resolve) => broken.once('close', resolve))
  const [head] = await once(broken, 'response') as [Record<string, unknown>]
  t.equal(head[':status'], 500)
  await brokenClosed
  t.equal(broken.rstCode, NGHTTP2_INTERNAL_ERROR)
  t.ok(await eventually(() => logsAbove(logs, 40).some((line) => (line.err as { code?: string } | undefined)?.code === 'FST_WS_GATE_BODY_STREAM_ERROR')))
})

t.test('a client that stops reading (flow control) is cut off with CANCEL after denialTimeout; the session lives on', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/big', { websocket: true, handshake: () => reject(403, undefined, { body: Buffer.alloc(100_000, 97) }) }, () => {})
    app.get('/ok', { websocket: true }, (socket) => { socket.send('ok') })
  }, { denialTimeout: 200, denialMaxBodySize: 200_000 }, H2)
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 1000 } })
  t.teardown(() => session.destroy())
  await once(session, 'remoteSettings')
  const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/big', ':scheme': 'http', 'sec-websocket-version': '13' })
  stream.on('error', () => {})
  const [head] = await once(stream, 'response') as [Record<string, unknown>]
  t.equal(head[':status'], 403)
  stream.pause()
  await new Promise((resolve) => stream.once('close', resolve))
  t.equal(stream.rstCode, NGHTTP2_CANCEL)
  const other = await h2connect(session, '/ok')
  t.equal(await nextMessage(other.ws!), 'ok')
  other.ws!.close()
})

t.test('the route\'s WebSocket handler: its throw, its rejection and its socket\'s errors go to @fastify/websocket\'s errorHandler', async (t) => {
  const seen: string[] = []
  const { port } = await start(t, (app) => {
    app.get('/throws', { websocket: true }, () => { throw new Error('sync') })
    app.get('/rejects', { websocket: true }, async () => { throw new Error('async') })
  }, { websocket: { errorHandler: (error, socket) => { seen.push(error.message); socket.terminate() } } }, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  for (const path of ['/throws', '/rejects']) {
    const answer = await h2connect(session, path)
    t.equal(answer.status, 200)
    await once(answer.ws!, 'close')
  }
  t.same(seen, ['sync', 'async'])
})

t.test('without an errorHandler, a failing WebSocket handler is logged and its connection terminated', async (t) => {
  const { port, logs } = await start(t, (app) => {
    app.get('/throws', { websocket: true }, () => { throw new Error('sync') })
  }, {}, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const answer = await h2connect(session, '/throws')
  const [code] = await once(answer.ws!, 'close') as [number]
  t.equal(code, 1006)
  t.ok(logsAbove(logs, 40).some((line) => (line.err as { message?: string } | undefined)?.message === 'sync'))
})

t.test('a \'connection\' listener that throws during the accept: the stream is reset, nothing more is sent', async (t) => {
  const { port, app } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, {}, H2)
  app.websocketServer.on('connection', () => { throw new Error('listener bug') })
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const answer = await h2connect(session, '/ws')
  t.equal(answer.status, 200)
  t.equal(await answer.closed, NGHTTP2_INTERNAL_ERROR)
})

t.test('a session carrying a WebSocket is not closed by the session timeout; it is again once none is open', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true }, (socket) => { socket.on('message', (data) => { socket.send(data) }) })
  }, {}, { http2: true, http2SessionTimeout: 300 } as never)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const answer = await h2connect(session, '/ws')
  await wait(700)
  answer.ws!.send('after a quiet spell')
  t.equal(await nextMessage(answer.ws!), 'after a quiet spell')
  answer.ws!.close()
  await once(answer.ws!, 'close')
  const started = Date.now()
  await once(session, 'close')
  t.ok(Date.now() - started < 5000, 'the idle session was closed by the server')
})

t.test('ASGI over HTTP/2: scope http_version "2", :authority as Host, no pseudo-headers; the denial-response extension', async (t) => {
  const scopes: WebSocketScope[] = []
  const { port } = await start(t, (app) => {
    app.get('/asgi/*', asgi(async (scope, receive, send) => {
      scopes.push(scope as WebSocketScope)
      await receive()
      if (scope.path === '/asgi/deny') {
        await send({ type: 'websocket.http.response.start', status: 418, headers: [[Buffer.from('content-type'), Buffer.from('text/plain')], [Buffer.from('content-length'), Buffer.from('6')]] })
        await send({ type: 'websocket.http.response.body', body: Buffer.from('tea'), more_body: true })
        await send({ type: 'websocket.http.response.body', body: Buffer.from('pot') })
        return
      }
      await send({ type: 'websocket.accept', subprotocol: 'chat' })
      await send({ type: 'websocket.send', text: 'hi' })
    }))
  }, {}, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const accepted = await h2connect(session, '/asgi/room?x=1', { protocols: ['chat'], headers: { ':authority': `example.test:${port}` } })
  t.equal(accepted.status, 200)
  t.equal(accepted.headers['sec-websocket-protocol'], 'chat')
  t.equal(await nextMessage(accepted.ws!), 'hi')
  const scope = scopes[0]
  t.equal(scope.http_version, '2')
  t.equal(scope.scheme, 'ws')
  t.equal(scope.path, '/asgi/room')
  t.equal(String(scope.query_string), 'x=1')
  const names = scope.headers.map(([name]) => String(name))
  t.equal(names[0], 'host')
  t.equal(String(scope.headers[0][1]), `example.test:${port}`)
  t.notOk(names.some((name) => name.startsWith(':')))
  t.same(scope.subprotocols, ['chat'])
  const denied = await h2connect(session, '/asgi/deny')
  t.equal(denied.status, 418)
  t.equal(denied.headers['content-type'], 'text/plain')
  t.equal(denied.headers['content-length'], '6')
  t.equal(denied.body, 'teapot')
})

t.test('1,000 WebSockets on one HTTP/2 connection, half accepted and half refused, each with its own answer and messages', async (t) => {
  const { port, app } = await start(t, (app) => {
    app.get('/n/:i', {
      websocket: true,
      handshake: (request) => Number((request.params as { i: string }).i) % 2 === 0 ? accept() : reject(403, `no ${(request.params as { i: string }).i}`)
    }, (socket, request) => {
      socket.on('message', (data) => { socket.send(`${(request.params as { i: string }).i}:${String(data)}`) })
    })
  }, {}, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const answers = await Promise.all(Array.from({ length: 1000 }, (_, i) => h2connect(session, `/n/${i}`)))
  let wrong = 0
  const echoes: Array<Promise<string>> = []
  answers.forEach((answer, i) => {
    if (i % 2 === 0) {
      if (answer.status !== 200) wrong++
      const echoed = nextMessage(answer.ws!)
      answer.ws!.send(`m${i}`)
      echoes.push(echoed.then((text) => text === `${i}:m${i}` ? '' : text))
    } else if (answer.status !== 403 || JSON.parse(answer.body).message !== `no ${i}`) {
      wrong++
    }
  })
  t.equal(wrong, 0)
  t.same((await Promise.all(echoes)).filter((text) => text !== ''), [])
  t.equal(app.websocketServer.clients.size, 500)
  for (const [i, answer] of answers.entries()) if (i % 2 === 0) answer.ws!.close()
  t.ok(await eventually(() => app.websocketServer.clients.size === 0, 5000))
  t.equal(app.wsGate.pending, 0)
})

t.test('options: http2 must be a boolean; with ws\'s server option the HTTP/2 server advertises nothing', async (t) => {
  const app = Fastify({ http2: true })
  const err = await app.register(fastifyWsGate, { http2: 'yes' as never }).ready().then(() => null, (err: Error) => err)
  t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_OPTION')
  await app.close()
  const other = (await import('node:http')).createServer()
  t.teardown(() => { other.close() })
  const { port } = await start(t, () => {}, { websocket: { options: { server: other } } }, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  t.equal(session.remoteSettings.enableConnectProtocol, false)
})

t.test('a plain CONNECT (a tunnel) is answered 405', async (t) => {
  const { port } = await start(t, () => {}, {}, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const stream = session.request({ ':method': 'CONNECT', ':authority': 'example.com:443' })
  stream.on('error', () => {})
  const [head] = await once(stream, 'response') as [Record<string, unknown>]
  t.equal(head[':status'], 405)
  t.equal(head.allow, 'GET')
  let body = ''
  stream.setEncoding('utf8')
  for await (const chunk of stream) body += chunk as string
  t.equal(JSON.parse(body).message, 'A WebSocket upgrade must use GET, not CONNECT without :protocol')
})
