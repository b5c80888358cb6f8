// Contract point 5: an invalid decision is a programming error. The client gets
// a plain 500, the log gets one error line with a documented code, and nothing
// invalid reaches the wire.
import { Readable } from 'node:stream'
import t from 'tap'
import { accept, reject } from '../lib/index.js'
import { parseRaw, rawExchange, stableHead, start, upgradeRequest } from './helpers.js'

const BODY = '{"statusCode":500,"error":"Internal Server Error","message":"Internal Server Error"}'

const cases: Array<[string, () => unknown, string, RegExp]> = [
  ['status 700', () => reject(700), 'FST_WS_GATE_INVALID_STATUS', /got 700$/],
  ['status 101', () => reject(101), 'FST_WS_GATE_INVALID_STATUS', /got 101$/],
  ['status 199', () => reject(199), 'FST_WS_GATE_INVALID_STATUS', /got 199$/],
  ['status 600', () => reject(600), 'FST_WS_GATE_INVALID_STATUS', /got 600$/],
  ['non-integer status', () => reject(401.5), 'FST_WS_GATE_INVALID_STATUS', /got 401\.5$/],
  ['NaN status', () => reject(NaN), 'FST_WS_GATE_INVALID_STATUS', /got NaN$/],
  ['string status', () => reject('401' as unknown as number), 'FST_WS_GATE_INVALID_STATUS', /got "401"$/],
  ['header name with a space', () => reject(401, undefined, { headers: { 'Bad Name': 'x' } }), 'FST_WS_GATE_INVALID_HEADER', /"Bad Name": the name is not an RFC 9110 token/],
  ['header name with a colon', () => reject(401, undefined, { headers: { 'x:y': 'x' } }), 'FST_WS_GATE_INVALID_HEADER', /not an RFC 9110 token/],
  ['empty header name', () => reject(401, undefined, { headers: { '': 'x' } }), 'FST_WS_GATE_INVALID_HEADER', /not an RFC 9110 token/],
  ['header value with CR LF', () => reject(401, undefined, { headers: { 'X-A': 'a\r\nSet-Cookie: evil=1' } }), 'FST_WS_GATE_INVALID_HEADER', /X-A: the value contains CR, LF, NUL/],
  ['header value with LF', () => reject(401, undefined, { headers: { 'X-A': 'a\nb' } }), 'FST_WS_GATE_INVALID_HEADER', /X-A: the value contains/],
  ['header value with NUL', () => reject(401, undefined, { headers: { 'X-A': 'a\u0000b' } }), 'FST_WS_GATE_INVALID_HEADER', /X-A: the value contains/],
  ['header value above U+00FF', () => reject(401, undefined, { headers: { 'X-A': 'snow \u2603' } }), 'FST_WS_GATE_INVALID_HEADER', /above U\+00FF/],
  ['header value that is an object', () => reject(401, undefined, { headers: { 'X-A': {} as unknown as string } }), 'FST_WS_GATE_INVALID_HEADER', /X-A: the value must be a string or a finite number, got object/],
  ['header value Infinity', () => reject(401, undefined, { headers: { 'X-A': Infinity } }), 'FST_WS_GATE_INVALID_HEADER', /got number/],
  ['headers that are a string', () => reject(401, undefined, { headers: 'X-A: 1' as never }), 'FST_WS_GATE_INVALID_HEADER', /headers must be an object or a list of \[name, value\] pairs/],
  ['a header pair of three', () => reject(401, undefined, { headers: [['X-A', '1', '2'] as never] }), 'FST_WS_GATE_INVALID_HEADER', /each header must be a \[name, value\] pair/],
  ['reject Upgrade header', () => reject(401, undefined, { headers: { Upgrade: 'websocket' } }), 'FST_WS_GATE_FORBIDDEN_HEADER', /^Header Upgrade belongs to the handshake/],
  ['reject Connection header', () => reject(401, undefined, { headers: { connection: 'keep-alive' } }), 'FST_WS_GATE_FORBIDDEN_HEADER', /^Header connection/],
  ['reject Content-Length header', () => reject(401, undefined, { headers: { 'Content-Length': '5' } }), 'FST_WS_GATE_FORBIDDEN_HEADER', /Content-Length/],
  ['reject Transfer-Encoding header', () => reject(401, undefined, { headers: { 'Transfer-Encoding': 'chunked' } }), 'FST_WS_GATE_FORBIDDEN_HEADER', /Transfer-Encoding/],
  ['reject Sec-WebSocket-Accept header', () => reject(401, undefined, { headers: { 'Sec-WebSocket-Accept': 'x' } }), 'FST_WS_GATE_FORBIDDEN_HEADER', /Sec-WebSocket-Accept/],
  ['accept Sec-WebSocket-Protocol header', () => accept({ headers: { 'sec-websocket-protocol': 'chat' } }), 'FST_WS_GATE_FORBIDDEN_HEADER', /sec-websocket-protocol/],
  ['accept Sec-WebSocket-Extensions header', () => accept({ headers: { 'Sec-WebSocket-Extensions': 'x' } }), 'FST_WS_GATE_FORBIDDEN_HEADER', /Sec-WebSocket-Extensions/],
  ['accept header value with CR', () => accept({ headers: { 'Set-Cookie': 'a=1\rb' } }), 'FST_WS_GATE_INVALID_HEADER', /Set-Cookie: the value contains/],
  ['accept header value with obs-text', () => accept({ headers: { 'X-Latin': 'caf\u00e9' } }), 'FST_WS_GATE_INVALID_HEADER', /X-Latin: a 101 header value must be ASCII/],
  ['accept protocol not offered', () => accept({ protocol: 'chat.v3' }), 'FST_WS_GATE_PROTOCOL_NOT_OFFERED', /^Subprotocol "chat.v3" was not offered by the client \(offered: chat.v1, chat.v2\)$/],
  ['accept protocol that is not a string', () => accept({ protocol: 42 as unknown as string }), 'FST_WS_GATE_PROTOCOL_NOT_OFFERED', /^Subprotocol 42 was not offered/],
  ['returns undefined', () => undefined, 'FST_WS_GATE_INVALID_DECISION', /must return accept\(\) or reject\(\), got undefined$/],
  ['returns null', () => null, 'FST_WS_GATE_INVALID_DECISION', /got null$/],
  ['returns true', () => true, 'FST_WS_GATE_INVALID_DECISION', /got boolean$/],
  ['returns a lookalike object', () => ({ accept: true }), 'FST_WS_GATE_INVALID_DECISION', /got an instance of Object$/],
  ['returns a null-prototype object', () => Object.create(null), 'FST_WS_GATE_INVALID_DECISION', /got an instance of a null-prototype object$/],
  ['returns an array', () => [accept()], 'FST_WS_GATE_INVALID_DECISION', /got an array$/],
  ['resolves to a string', async () => 'accept', 'FST_WS_GATE_INVALID_DECISION', /got string$/],
  ['body that is a number', () => reject(400, undefined, { body: 42 as never }), 'FST_WS_GATE_INVALID_BODY', /^Invalid denial body: expected a string, bytes, a plain object or a readable stream, got number$/],
  ['body that is a Map', () => reject(400, undefined, { body: new Map() as never }), 'FST_WS_GATE_INVALID_BODY', /got an instance of Map$/],
  ['body with a cycle', () => { const body: Record<string, unknown> = {}; body.self = body; return reject(400, undefined, { body }) }, 'FST_WS_GATE_INVALID_BODY', /cannot be serialised as JSON/],
  ['body with a BigInt', () => reject(400, undefined, { body: { n: 1n } }), 'FST_WS_GATE_INVALID_BODY', /cannot be serialised as JSON/],
  ['reason that is not a string', () => reject(400, 42 as unknown as string), 'FST_WS_GATE_INVALID_BODY', /the reason must be a string, got number/]
]

t.test('each invalid decision gives a 500 and one error log line with its code', async (t) => {
  const decisions = new Map(cases.map(([name, decide]) => [name, decide]))
  const { port, logs } = await start(t, (app) => {
    app.get('/bad', {
      websocket: true,
      handshake: (request) => (decisions.get(request.headers['x-case'] as string) as () => never)()
    }, () => { throw new Error('the WebSocket handler must not run') })
  })
  for (const [name, , code, message] of cases) {
    logs.length = 0
    const request = upgradeRequest('/bad', { 'X-Case': name, 'Sec-WebSocket-Protocol': 'chat.v1, chat.v2' })
    const res = await rawExchange(port, request)
    const { statusLine, headerLines, body } = parseRaw(res.text)
    t.equal(statusLine, 'HTTP/1.1 500 Internal Server Error', name)
    t.strictSame(stableHead(headerLines), [
      'Content-Type: application/json; charset=utf-8', `Content-Length: ${BODY.length}`, 'Date: <date>', 'Connection: close'
    ], `${name}: headers`)
    t.equal(body, BODY, `${name}: body`)
    t.equal(res.closed, true)
    const errors = logs.filter((line) => line.level >= 50)
    t.equal(errors.length, 1, `${name}: one error line`)
    t.equal(errors[0]?.msg, 'invalid handshake decision')
    const err = errors[0]?.err as { code: string, message: string, statusCode: number }
    t.equal(err?.code, code, `${name}: ${code}`)
    t.match(err?.message, message, `${name}: message`)
  }
})

t.test('the stream body of an invalid decision is destroyed, never read', async (t) => {
  let destroyed = false
  const body = new Readable({ read () {}, destroy (err, cb) { destroyed = true; cb(err) } })
  const { port } = await start(t, (app) => {
    app.get('/x', { websocket: true, handshake: () => reject(700, undefined, { body }) }, () => {})
  })
  const res = await rawExchange(port, upgradeRequest('/x'))
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 500 Internal Server Error')
  t.equal(destroyed, true)
  t.equal(body.readableDidRead, false)
})

t.test('a stream that fails mid-body cuts the response short and logs one error', async (t) => {
  const { port, logs } = await start(t, (app) => {
    app.get('/x', {
      websocket: true,
      handshake: () => reject(503, undefined, {
        body: Readable.from((async function * () { yield 'partial'; throw new Error('disk on fire') })())
      })
    }, () => {})
  })
  const res = await rawExchange(port, upgradeRequest('/x'))
  const { statusLine, body } = parseRaw(res.text)
  t.equal(statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.equal(body, '7\r\npartial\r\n', 'no terminating chunk: the client sees an incomplete body')
  t.equal(res.closed, true)
  const errors = logs.filter((line) => line.level >= 50)
  t.equal(errors.length, 1)
  t.equal((errors[0].err as { code: string }).code, 'FST_WS_GATE_BODY_STREAM_ERROR')
  t.match((errors[0].err as { message: string }).message, /disk on fire/)
})

t.test('a stream that yields objects is a stream error', async (t) => {
  const { port, logs } = await start(t, (app) => {
    app.get('/x', {
      websocket: true,
      handshake: () => reject(400, undefined, { body: Readable.from([{ not: 'bytes' }]) })
    }, () => {})
  })
  const res = await rawExchange(port, upgradeRequest('/x'))
  t.equal(parseRaw(res.text).body, '')
  t.equal(res.closed, true)
  const errors = logs.filter((line) => line.level >= 50)
  t.equal(errors.length, 1)
  t.match((errors[0].err as { message: string }).message, /a stream chunk must be a string or bytes, got an instance of Object/)
})

t.test('accepting a subprotocol when the client offered none', async (t) => {
  const { port, logs } = await start(t, (app) => {
    app.get('/x', { websocket: true, handshake: () => accept({ protocol: 'chat' }) }, () => {})
  })
  const res = await rawExchange(port, upgradeRequest('/x'))
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 500 Internal Server Error')
  const errors = logs.filter((line) => line.level >= 50)
  t.equal(errors.length, 1)
  t.equal((errors[0].err as { message: string }).message, 'Subprotocol "chat" was not offered by the client (offered: (none))')
})
