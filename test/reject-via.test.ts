// rejectVia: a reject() that a browser can read, as a 101 followed at once by
// a close frame with code 4000 + status and the reason.
import diagnostics from 'node:diagnostics_channel'
import { once } from 'node:events'
import { connect } from 'node:net'
import { Readable } from 'node:stream'
import Fastify from 'fastify'
import t from 'tap'
import type WebSocket from 'ws'
import fastifyWsGate, {
  accept, asgi, HANDSHAKE_CHANNEL, reject, type FastifyWsGateOptions, type HandshakeDecision, type HandshakeEvent, type RejectVia
} from '../lib/index.js'
import { truncateUtf8 } from '../lib/core/refusal.js'
import {
  ACCEPT, collect, connectWs, denied, eventually, logsAbove, opened, parseRaw, rawExchange, stableHead, start, upgradeAndWait, upgradeRequest
} from './helpers.js'

// A route whose handshake returns what `decide` says for the request; counts
// how often the route's WebSocket handler runs.
async function serve (
  t: tap.Test, decide: () => HandshakeDecision | Promise<HandshakeDecision>, options: FastifyWsGateOptions = {}, rejectVia?: RejectVia
) {
  const handled = { count: 0 }
  const app = await start(t, (fastify) => {
    fastify.get('/ws', {
      websocket: true,
      ...(rejectVia !== undefined && { rejectVia }),
      handshake: decide
    }, (socket) => {
      handled.count++
      socket.send('hello')
    })
  }, options)
  return { ...app, handled }
}

function closed (ws: WebSocket): Promise<{ code: number, reason: string }> {
  return once(ws, 'close').then(([code, reason]) => ({ code: code as number, reason: String(reason) }))
}

t.test('close-frame: a 101 with the first offered subprotocol and the headers that still mean something, then 4401 and the reason', async (t) => {
  const { port, handled, app, logs } = await serve(t, () => reject(401, 'Invalid token', {
    headers: {
      'WWW-Authenticate': 'Bearer realm="chat"',
      'Set-Cookie': ['session=; Max-Age=0', 'seen=1'],
      'X-Request-Id': 'abc',
      'Retry-After': '3',
      Location: '/elsewhere',
      'Content-Language': 'en',
      Allow: 'GET',
      'Cache-Control': 'no-store'
    },
    body: { detail: 'never sent' }
  }), { rejectVia: 'close-frame' })
  const outcome = opened(await connectWs(port, '/ws', { protocols: ['chat.v1', 'chat.v2'] }))
  t.equal(outcome.protocol, 'chat.v1')
  t.strictSame(outcome.headers['set-cookie'], ['session=; Max-Age=0', 'seen=1'])
  t.equal(outcome.headers['x-request-id'], 'abc')
  t.equal(outcome.headers['cache-control'], 'no-store')
  for (const name of ['www-authenticate', 'retry-after', 'location', 'content-language', 'content-type', 'allow']) {
    t.equal(outcome.headers[name], undefined, `${name} is dropped`)
  }
  t.strictSame(await closed(outcome.ws), { code: 4401, reason: 'Invalid token' })
  t.strictSame(outcome.messages, [], 'no message is delivered')
  t.equal(handled.count, 0, 'the route\'s WebSocket handler never runs')
  t.equal(app.wsGate.pending, 0)
  const line = logs.find((entry) => entry.msg === 'handshake rejected with a close frame')
  t.equal(line?.statusCode, 401)
  t.equal(line?.closeCode, 4401)
  t.strictSame(logsAbove(logs, 30), [])
})

t.test('close-frame on the wire: the exact 101, the close frame, and the connection closed after the close handshake', async (t) => {
  const { port } = await serve(t, () => reject(404, 'No such room'), { rejectVia: 'close-frame' })
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(upgradeRequest('/ws'))
  const expectedHead = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`
  const frame = Buffer.concat([Buffer.from([0x88, 2 + 12, 4404 >> 8, 4404 & 0xff]), Buffer.from('No such room')])
  const expected = Buffer.concat([Buffer.from(expectedHead, 'latin1'), frame])
  // Once the 101 and the close frame are in, the client answers the close
  // (masked, as a client must); the server must then hang up, well before
  // denialTimeout (10 s) would cut it off.
  const mask = [1, 2, 3, 4]
  const answer = Buffer.from([0x88, 0x82, ...mask, ...[4404 >> 8, 4404 & 0xff].map((byte, i) => byte ^ mask[i])])
  const { received, ended } = await new Promise<{ received: Buffer, ended: boolean }>((resolve) => {
    let received = Buffer.alloc(0)
    const timer = setTimeout(() => resolve({ received, ended: false }), 2000)
    socket.on('data', (chunk: Buffer) => {
      const before = received.length
      received = Buffer.concat([received, chunk])
      if (before < expected.length && received.length >= expected.length) socket.write(answer)
    })
    socket.on('end', () => {
      clearTimeout(timer)
      resolve({ received, ended: true })
    })
  })
  socket.destroy()
  t.equal(received.toString('latin1'), expected.toString('latin1'), 'the 101, the close frame, and nothing after')
  t.equal(ended, true, 'the server ended the connection after the close handshake')
})

t.test('the reason is cut to 123 bytes, never inside a UTF-8 character', async (t) => {
  const reasons = ['x'.repeat(200), 'é'.repeat(100), '😀'.repeat(40), 'ok']
  let next = 0
  const { port } = await serve(t, () => reject(429, reasons[next++]), { rejectVia: 'close-frame' })
  const seen: string[] = []
  for (let i = 0; i < reasons.length; i++) {
    const outcome = opened(await connectWs(port, '/ws'))
    seen.push((await closed(outcome.ws)).reason)
  }
  t.strictSame(seen, ['x'.repeat(123), 'é'.repeat(61), '😀'.repeat(30), 'ok'])
  t.strictSame(seen.map((reason) => Buffer.byteLength(reason)), [123, 122, 120, 2])
  t.equal(truncateUtf8('aé', 2), 'a', 'a cut in the middle of é backs up to its start')
})

t.test('a bare reject() is 4403 with no reason; a status from 200 to 599 maps to 4200 to 4599', async (t) => {
  const decisions = [reject(), reject(200), reject(599, 'bye'), reject(307, 'Moved', { headers: { location: 'ws://other/' } })]
  let next = 0
  const { port } = await serve(t, () => decisions[next++], { rejectVia: 'close-frame' })
  const seen: Array<{ code: number, reason: string }> = []
  for (let i = 0; i < decisions.length; i++) seen.push(await closed(opened(await connectWs(port, '/ws')).ws))
  t.strictSame(seen, [{ code: 4403, reason: '' }, { code: 4200, reason: '' }, { code: 4599, reason: 'bye' }, { code: 4307, reason: 'Moved' }])
})

t.test('auto: a close frame for requests with an Origin header, HTTP for the rest', async (t) => {
  const { port } = await serve(t, () => reject(401, 'Invalid token'), { rejectVia: 'auto' })
  const browser = opened(await connectWs(port, '/ws', { headers: { Origin: 'http://127.0.0.1' } }))
  t.strictSame(await closed(browser.ws), { code: 4401, reason: 'Invalid token' })
  const other = denied(await connectWs(port, '/ws'))
  t.equal(other.statusCode, 401)
  t.equal(other.body, '{"statusCode":401,"error":"Unauthorized","message":"Invalid token"}')
})

t.test('a route\'s rejectVia overrides the plugin\'s; accept() is the same in every mode', async (t) => {
  const { port } = await start(t, (fastify) => {
    fastify.get('/http', { websocket: true, rejectVia: 'http', handshake: () => reject(403, 'no') }, () => {})
    fastify.get('/frame', { websocket: true, rejectVia: 'close-frame', handshake: () => reject(403, 'no') }, () => {})
    fastify.get('/plugin', { websocket: true, handshake: () => reject(403, 'no') }, () => {})
    fastify.get('/yes', { websocket: true, handshake: (_request, { protocols }) => accept({ protocol: protocols[1] }) }, (socket) => { socket.send('in') })
  }, { rejectVia: 'auto' })
  const origin = { Origin: 'https://app.example' }
  t.equal(denied(await connectWs(port, '/http', { headers: origin })).statusCode, 403)
  t.strictSame(await closed(opened(await connectWs(port, '/frame')).ws), { code: 4403, reason: 'no' })
  t.strictSame(await closed(opened(await connectWs(port, '/plugin', { headers: origin })).ws), { code: 4403, reason: 'no' })
  const yes = opened(await connectWs(port, '/yes', { headers: origin, protocols: ['a', 'b'] }))
  t.equal(yes.protocol, 'b')
  t.equal(await yes.first, 'in')
  yes.ws.close()
})

t.test('what is not a reject() stays HTTP: timeouts, invalid decisions, errors, refused origins', async (t) => {
  const { port } = await start(t, (fastify) => {
    fastify.get('/slow', { websocket: true, handshakeTimeout: 30, handshake: () => new Promise<HandshakeDecision>(() => {}) }, () => {})
    fastify.get('/bad', { websocket: true, handshake: () => reject(700) }, () => {})
    fastify.get('/throws', { websocket: true, handshake: () => { throw Object.assign(new Error('Forbidden here'), { statusCode: 403 }) } }, () => {})
    fastify.get('/origin', { websocket: true, allowedOrigins: ['https://good.example'], handshake: () => accept() }, () => {})
  }, { rejectVia: 'close-frame' })
  const slow = denied(await connectWs(port, '/slow'))
  t.equal(slow.statusCode, 503)
  t.equal(slow.headers['retry-after'], '5')
  t.equal(denied(await connectWs(port, '/bad')).statusCode, 500)
  const thrown = denied(await connectWs(port, '/throws'))
  t.equal(thrown.statusCode, 403)
  t.equal(thrown.body, '{"statusCode":403,"error":"Forbidden","message":"Forbidden here"}')
  t.equal(denied(await connectWs(port, '/origin', { headers: { Origin: 'https://evil.example' } })).statusCode, 403)
})

t.test('a reject() is checked as for HTTP, and a kept header must be ASCII: otherwise 500, and a stream body is destroyed', async (t) => {
  const stream = new Readable({ read () {} })
  const decisions: HandshakeDecision[] = [
    reject(401, 'x', { headers: { 'X-Name': 'caf\u00e9' } }),
    reject(401, 'x', { headers: { Connection: 'keep-alive' } }),
    reject(401, 'x', { body: 42 as never }),
    // Non-ASCII in a dropped header is fine: it never goes out.
    reject(401, 'x', { headers: { 'WWW-Authenticate': 'Bearer realm="caf\u00e9"' }, body: stream })
  ]
  let next = 0
  const { port, logs } = await serve(t, () => decisions[next++], { rejectVia: 'close-frame' })
  for (let i = 0; i < 3; i++) {
    const { statusLine, body } = parseRaw((await rawExchange(port, upgradeRequest('/ws'))).text)
    t.equal(statusLine, 'HTTP/1.1 500 Internal Server Error')
    t.equal(body, '{"statusCode":500,"error":"Internal Server Error","message":"Internal Server Error"}')
  }
  t.strictSame(logs.filter((line) => line.msg === 'invalid handshake decision').map((line) => (line.err as { code: string }).code),
    ['FST_WS_GATE_INVALID_HEADER', 'FST_WS_GATE_FORBIDDEN_HEADER', 'FST_WS_GATE_INVALID_BODY'])
  t.strictSame(await closed(opened(await connectWs(port, '/ws')).ws), { code: 4401, reason: 'x' })
  t.equal(stream.destroyed, true)
})

t.test('a rejection by close frame is reported as rejected, with its status', async (t) => {
  const events: HandshakeEvent[] = []
  const listen = (message: unknown): void => { events.push(message as HandshakeEvent) }
  diagnostics.subscribe(HANDSHAKE_CHANNEL, listen)
  t.teardown(() => { diagnostics.unsubscribe(HANDSHAKE_CHANNEL, listen) })
  const { port } = await serve(t, () => reject(401, 'no'), { rejectVia: 'close-frame' })
  await closed(opened(await connectWs(port, '/ws')).ws)
  await eventually(() => events.length === 1)
  t.strictSame(events.map(({ outcome, status }) => ({ outcome, status })), [{ outcome: 'rejected', status: 401 }])
})

t.test('the early frames of a client that did not wait are dropped with the connection', async (t) => {
  let release!: (decision: HandshakeDecision) => void
  const { port, handled } = await serve(t, () => new Promise((resolve) => { release = resolve }), { rejectVia: 'close-frame' })
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  // A masked text frame "hi", sent before the 101.
  socket.write(upgradeRequest('/ws'))
  socket.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0x68, 0x69]))
  await eventually(() => release !== undefined, 2000)
  release(reject(401, 'late'))
  const { bytes } = await collect(socket, null, 500)
  const text = bytes.toString('latin1')
  t.match(text, /^HTTP\/1\.1 101 Switching Protocols\r\n/)
  t.equal(text.slice(text.indexOf('\r\n\r\n') + 4), '\x88\x06\x11\x31late')
  t.equal(handled.count, 0)
})

t.test('rejectVia is checked where it is given', async (t) => {
  const app = Fastify()
  const err = await app.register(fastifyWsGate, { rejectVia: 'frames' as never }).ready().then(() => null, (err: Error) => err)
  t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_OPTION')
  t.equal(err?.message, 'Invalid fastify-ws-gate option rejectVia: must be \'http\', \'close-frame\' or \'auto\', got "frames"')
  await app.close()
  const other = Fastify()
  await other.register(fastifyWsGate)
  t.throws(() => other.get('/a', { websocket: true, rejectVia: 'no' as never, handshake: () => accept() }, () => {}), {
    code: 'FST_WS_GATE_INVALID_ROUTE_OPTION',
    message: /rejectVia.*must be 'http', 'close-frame' or 'auto', got "no"/
  })
  t.throws(() => other.get('/b', { websocket: true, rejectVia: 'auto' }, () => {}), {
    code: 'FST_WS_GATE_INVALID_ROUTE_OPTION', message: /rejectVia.*needs a handshake handler/
  })
  await other.close()
})

t.test('asgi(): a close before accept is 4403 with its reason; a denial response is 4000 + its status', async (t) => {
  const disconnects: unknown[] = []
  const { port } = await start(t, (fastify) => {
    fastify.get('/close', {
      ...asgi(async (_scope, receive, send) => {
        await receive()
        await send({ type: 'websocket.close', code: 1008, reason: 'Not on the list' })
        disconnects.push(await receive())
      }),
      rejectVia: 'close-frame'
    })
    fastify.get('/bare', {
      ...asgi(async (_scope, receive, send) => {
        await receive()
        await send({ type: 'websocket.close' })
      }),
      rejectVia: 'close-frame'
    })
    fastify.get('/response', {
      ...asgi(async (_scope, receive, send) => {
        await receive()
        await send({
          type: 'websocket.http.response.start',
          status: 401,
          headers: [[Buffer.from('content-length'), Buffer.from('5')], [Buffer.from('www-authenticate'), Buffer.from('Basic')], [Buffer.from('x-id'), Buffer.from('7')]]
        })
        disconnects.push(await receive())
        await send({ type: 'websocket.http.response.body', body: Buffer.from('nope!') })
      }),
      rejectVia: 'close-frame'
    })
    fastify.get('/http', asgi(async (_scope, receive, send) => {
      await receive()
      await send({ type: 'websocket.close', reason: 'unused' })
    }))
  })
  t.strictSame(await closed(opened(await connectWs(port, '/close')).ws), { code: 4403, reason: 'Not on the list' })
  t.strictSame(await closed(opened(await connectWs(port, '/bare')).ws), { code: 4403, reason: '' })
  const response = opened(await connectWs(port, '/response', { protocols: ['p'] }))
  t.equal(response.protocol, 'p')
  t.equal(response.headers['x-id'], '7')
  t.equal(response.headers['www-authenticate'], undefined)
  t.equal(response.headers['content-length'], undefined)
  t.strictSame(await closed(response.ws), { code: 4401, reason: '' })
  await eventually(() => disconnects.length === 2)
  t.strictSame(disconnects, [{ type: 'websocket.disconnect', code: 1006 }, { type: 'websocket.disconnect', code: 1006 }])
  const http = parseRaw((await rawExchange(port, upgradeRequest('/http'))).text)
  t.equal(http.statusLine, 'HTTP/1.1 403 Forbidden')
  t.strictSame(stableHead(http.headerLines), ['Content-Length: 0', 'Date: <date>', 'Connection: close'])
  t.equal(http.body, '')
})

t.test('a client that never answers the close frame is cut off after denialTimeout', async (t) => {
  const { port, app } = await serve(t, () => reject(401, 'Invalid token'), { rejectVia: 'close-frame', denialTimeout: 200 })
  const { socket, first } = await upgradeAndWait(port, '/ws')
  const { bytes, closed } = await collect(socket, null, 3000)
  const all = Buffer.concat([first, bytes]).toString('latin1')
  t.equal(all.slice(all.indexOf('\r\n\r\n') + 4), '\x88\x0f\x11\x31Invalid token')
  t.equal(closed, true)
  t.equal(await eventually(() => app.websocketServer.clients.size === 0), true, 'and ws let go of it')
})
