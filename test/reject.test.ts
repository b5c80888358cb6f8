// Contract points 3 and 4: what reject() puts on the wire, byte for byte, and
// that the connection is closed after every denial with no 101 in sight.
import { Readable, Stream } from 'node:stream'
import t from 'tap'
import { reject } from '../lib/index.js'
import { connectWs, denied, eventually, parseRaw, rawExchange, stableHead, start, upgradeAndWait, upgradeRequest, wait } from './helpers.js'
import type { RejectDecision } from '../lib/index.js'

async function denialOf (t: tap.Test, decide: () => RejectDecision | Promise<RejectDecision>) {
  const { port } = await start(t, (app) => {
    app.get('/d', { websocket: true, handshake: decide }, () => { throw new Error('the WebSocket handler must not run') })
  })
  const result = await rawExchange(port, upgradeRequest('/d'))
  return { ...result, ...parseRaw(result.text), port }
}

t.test('a bare reject() is ASGI close-before-accept: 403, empty body', async (t) => {
  const res = await denialOf(t, () => reject())
  t.equal(res.statusLine, 'HTTP/1.1 403 Forbidden')
  t.strictSame(stableHead(res.headerLines), ['Content-Length: 0', 'Date: <date>', 'Connection: close'])
  t.equal(res.body, '')
  t.equal(res.closed, true, 'the server closed the connection')
})

t.test('reject(status, reason) sends the standard reason phrase and Fastify\'s error shape', async (t) => {
  const res = await denialOf(t, () => reject(401, 'Invalid token', { headers: { 'WWW-Authenticate': 'Bearer realm="chat"' } }))
  const body = '{"statusCode":401,"error":"Unauthorized","message":"Invalid token"}'
  t.equal(res.statusLine, 'HTTP/1.1 401 Unauthorized')
  t.strictSame(stableHead(res.headerLines), [
    'WWW-Authenticate: Bearer realm="chat"',
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${body.length}`,
    'Date: <date>',
    'Connection: close'
  ])
  t.equal(res.body, body)
  t.equal(res.closed, true)
  t.match(res.headerLines.find((line) => line.startsWith('Date: ')), /^Date: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/)
})

t.test('every status from 200 to 599 is sent with its standard reason phrase (or none)', async (t) => {
  const statuses = [200, 301, 302, 307, 308, 400, 404, 409, 418, 426, 429, 451, 500, 503, 599]
  const { port } = await start(t, (app) => {
    app.get('/s/:status', {
      websocket: true,
      handshake: (request) => reject(Number((request.params as { status: string }).status))
    }, () => {})
  })
  const phrases: Record<number, string> = {
    200: 'OK',
    301: 'Moved Permanently',
    302: 'Found',
    307: 'Temporary Redirect',
    308: 'Permanent Redirect',
    400: 'Bad Request',
    404: 'Not Found',
    409: 'Conflict',
    418: 'I\'m a Teapot',
    426: 'Upgrade Required',
    429: 'Too Many Requests',
    451: 'Unavailable For Legal Reasons',
    500: 'Internal Server Error',
    503: 'Service Unavailable',
    599: ''
  }
  for (const status of statuses) {
    const res = parseRaw((await rawExchange(port, upgradeRequest(`/s/${status}`))).text)
    t.equal(res.statusLine, `HTTP/1.1 ${status} ${phrases[status]}`, `status ${status}`)
    t.strictSame(stableHead(res.headerLines), ['Content-Length: 0', 'Date: <date>', 'Connection: close'])
  }
})

t.test('the ws client sees the status, headers and body of a denial', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', {
      websocket: true,
      handshake: () => reject(429, 'Slow down', { headers: { 'Retry-After': 30 } })
    }, () => {})
  })
  const res = denied(await connectWs(port, '/ws'))
  t.equal(res.statusCode, 429)
  t.equal(res.statusMessage, 'Too Many Requests')
  t.equal(res.headers['retry-after'], '30')
  t.equal(res.headers.connection, 'close')
  t.strictSame(JSON.parse(res.body), { statusCode: 429, error: 'Too Many Requests', message: 'Slow down' })
})

t.test('bodies: string, bytes, plain object, array', async (t) => {
  const json = 'application/json; charset=utf-8'
  const cases: Array<[RejectDecision, string, Buffer]> = [
    [reject(400, 'ignored when a body is given', { body: 'plain words é' }), 'text/plain; charset=utf-8', Buffer.from('plain words é', 'utf8')],
    [reject(400, undefined, { body: Buffer.from([0, 1, 2, 255]) }), 'application/octet-stream', Buffer.from([0, 1, 2, 255])],
    [reject(400, undefined, { body: new Uint8Array([9, 8, 7]).subarray(1) }), 'application/octet-stream', Buffer.from([8, 7])],
    [reject(422, undefined, { body: { errors: ['a', 'b'], nested: { ok: false } } }), json, Buffer.from('{"errors":["a","b"],"nested":{"ok":false}}')],
    [reject(422, undefined, { body: [1, 2] }), json, Buffer.from('[1,2]')],
    [reject(400, undefined, { body: Object.assign(Object.create(null), { bare: true }) }), json, Buffer.from('{"bare":true}')]
  ]
  for (const [decision, type, body] of cases) {
    const res = await denialOf(t, () => decision)
    t.strictSame(stableHead(res.headerLines), [`Content-Type: ${type}`, `Content-Length: ${body.length}`, 'Date: <date>', 'Connection: close'])
    t.strictSame(res.bytes.subarray(res.bytes.indexOf('\r\n\r\n') + 4), body)
  }
})

t.test('a Content-Type given by the application wins over the default', async (t) => {
  const res = await denialOf(t, () => reject(401, undefined, { headers: { 'content-type': 'text/html' }, body: '<p>no</p>' }))
  t.strictSame(stableHead(res.headerLines), ['content-type: text/html', 'Content-Length: 9', 'Date: <date>', 'Connection: close'])
  t.equal(res.body, '<p>no</p>')
})

t.test('a Date given by the application replaces ours', async (t) => {
  const res = await denialOf(t, () => reject(403, undefined, { headers: { Date: 'Thu, 01 Jan 1970 00:00:00 GMT' } }))
  t.strictSame(res.headerLines, ['Date: Thu, 01 Jan 1970 00:00:00 GMT', 'Content-Length: 0', 'Connection: close'])
})

t.test('a readable stream body is sent chunked, as it comes', async (t) => {
  const res = await denialOf(t, () => reject(503, undefined, {
    headers: { 'content-type': 'text/plain' },
    body: Readable.from(['first ', Buffer.from('second'), '', 'third'], { objectMode: true })
  }))
  t.equal(res.statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.strictSame(stableHead(res.headerLines), ['content-type: text/plain', 'Transfer-Encoding: chunked', 'Date: <date>', 'Connection: close'])
  t.equal(res.body, '6\r\nfirst \r\n6\r\nsecond\r\n5\r\nthird\r\n0\r\n\r\n', 'empty chunks are skipped: a 0-size chunk would end the body')
  t.equal(res.closed, true)
})

t.test('a streamed denial waits for a slow source and the ws client reads it whole', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/slow', {
      websocket: true,
      handshake: () => reject(401, undefined, {
        body: Readable.from((async function * () {
          for (const part of ['a', 'b', 'c']) { await wait(20); yield part }
        })())
      })
    }, () => {})
  })
  const res = denied(await connectWs(port, '/slow'))
  t.equal(res.statusCode, 401)
  t.equal(res.headers['transfer-encoding'], 'chunked')
  t.equal(res.headers['content-type'], 'application/octet-stream')
  t.equal(res.body, 'abc')
})

t.test('a large streamed body is written with backpressure and arrives intact', async (t) => {
  const chunk = Buffer.alloc(64 * 1024, 'x')
  const count = 64
  const { port } = await start(t, (app) => {
    app.get('/big', {
      websocket: true,
      handshake: () => reject(413, undefined, { body: Readable.from((function * () { for (let i = 0; i < count; i++) yield chunk })()) })
    }, () => {})
  }, { denialMaxBodySize: chunk.length * count })
  const res = denied(await connectWs(port, '/big'))
  t.equal(res.statusCode, 413)
  t.equal(res.body.length, chunk.length * count)
})

t.test('204 and 304 carry no body and no framing headers, whatever was given', async (t) => {
  for (const status of [204, 304]) {
    let destroyed = false
    const stream = new Readable({ read () {}, destroy (err, cb) { destroyed = true; cb(err) } })
    for (const body of ['text', stream]) {
      const res = await denialOf(t, () => reject(status, 'reason', { headers: { ETag: '"v1"' }, body }))
      t.equal(res.statusLine, `HTTP/1.1 ${status} ${status === 204 ? 'No Content' : 'Not Modified'}`)
      t.strictSame(stableHead(res.headerLines), ['ETag: "v1"', 'Date: <date>', 'Connection: close'])
      t.equal(res.body, '')
      t.equal(res.closed, true)
    }
    t.equal(destroyed, true, 'an unused stream body is destroyed')
  }
})

t.test('3xx with Location', async (t) => {
  const res = await denialOf(t, () => reject(307, undefined, { headers: { Location: 'ws://127.0.0.1:1/other' } }))
  t.equal(res.statusLine, 'HTTP/1.1 307 Temporary Redirect')
  t.strictSame(stableHead(res.headerLines), ['Location: ws://127.0.0.1:1/other', 'Content-Length: 0', 'Date: <date>', 'Connection: close'])
})

t.test('headers keep their order and duplicates; obs-text values go out as single bytes', async (t) => {
  const res = await denialOf(t, () => reject(401, undefined, {
    headers: [['Set-Cookie', 'a=1'], ['WWW-Authenticate', 'Bearer'], ['Set-Cookie', 'b=2'], ['X-Latin', 'caf\u00e9']]
  }))
  t.strictSame(stableHead(res.headerLines), [
    'Set-Cookie: a=1', 'WWW-Authenticate: Bearer', 'Set-Cookie: b=2', 'X-Latin: caf\u00e9',
    'Content-Length: 0', 'Date: <date>', 'Connection: close'
  ])
  t.ok(res.bytes.includes(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0d, 0x0a])), 'é is the byte 0xE9')
})

t.test('no 101 bytes are ever written for a denied handshake, and the socket is closed', async (t) => {
  const res = await denialOf(t, async () => { await wait(10); return reject(404, 'No such room') })
  t.notMatch(res.text, /101|Switching|Sec-WebSocket-Accept/i)
  t.equal(res.statusLine, 'HTTP/1.1 404 Not Found')
  t.equal(res.closed, true)
})

t.test('a status without a standard phrase gets the generic "Error" in the JSON body', async (t) => {
  const res = await denialOf(t, () => reject(599, 'Network timeout'))
  t.equal(res.statusLine, 'HTTP/1.1 599 ')
  t.equal(res.body, '{"statusCode":599,"error":"Error","message":"Network timeout"}')
})

t.test('a client that leaves during a streamed denial: the stream is destroyed, nothing logged above debug', async (t) => {
  let destroyed = false
  const body = new Readable({ read () {}, destroy (err, cb) { destroyed = true; cb(err) } })
  body.push('first part')
  const { port, logs } = await start(t, (app) => {
    app.get('/d', { websocket: true, handshake: () => reject(401, undefined, { body }) }, () => {})
  })
  const { socket, first: chunk } = await upgradeAndWait(port, '/d')
  t.match(chunk.toString('latin1'), /^HTTP\/1\.1 401 Unauthorized\r\n/)
  socket.destroy()
  t.ok(await eventually(() => destroyed, 2000), 'the body stream was destroyed')
  t.ok(await eventually(() => logs.some((line) => line.msg === 'client closed the connection during the denial body'), 2000))
  t.equal(logs.filter((line) => line.level >= 40).length, 0)
})

t.test('a client that stops reading, then leaves, while a large denial waits for drain', async (t) => {
  let destroyed = false
  let produced = 0
  const chunk = Buffer.alloc(64 * 1024, 'y')
  const body = new Readable({
    read () {
      // Bounded: 4096 chunks (256 MiB) at most, far more than any socket buffers.
      if (produced++ < 4096) this.push(chunk)
      else this.push(null)
    },
    destroy (err, cb) { destroyed = true; cb(err) }
  })
  const { port, logs } = await start(t, (app) => {
    app.get('/d', { websocket: true, handshake: () => reject(413, undefined, { body }) }, () => {})
  }, { denialMaxBodySize: 2 ** 31, denialTimeout: 0 })
  const { socket } = await upgradeAndWait(port, '/d')
  socket.pause()
  t.ok(await eventually(() => produced > 16, 2000), 'the server wrote until the socket pushed back')
  const stalled = produced
  await wait(100)
  t.ok(produced < 4096 && produced - stalled < 16, `the server waits for drain instead of buffering (${produced} chunks produced)`)
  socket.destroy()
  t.ok(await eventually(() => destroyed, 2000), 'the body stream was destroyed')
  t.ok(await eventually(() => logs.some((line) => line.msg === 'client closed the connection during the denial body'), 2000))
})

t.test('a classic stream (not a node:stream Readable) is sent chunked too', async (t) => {
  const classic = new Stream() as Stream & { readable: boolean, destroy?: () => void }
  classic.readable = true
  const res = await denialOf(t, () => {
    setTimeout(() => { classic.emit('data', Buffer.from('old ')); classic.emit('data', 'school'); classic.emit('end') }, 10)
    return reject(400, undefined, { body: classic as unknown as NodeJS.ReadableStream })
  })
  t.strictSame(stableHead(res.headerLines), ['Content-Type: application/octet-stream', 'Transfer-Encoding: chunked', 'Date: <date>', 'Connection: close'])
  t.equal(res.body, '4\r\nold \r\n6\r\nschool\r\n0\r\n\r\n')
})

t.test('a stream body with a reason: the stream is the body', async (t) => {
  const res = await denialOf(t, () => reject(401, 'Invalid token', { body: Readable.from(['streamed']) }))
  t.equal(res.statusLine, 'HTTP/1.1 401 Unauthorized')
  t.equal(res.body, '8\r\nstreamed\r\n0\r\n\r\n')
})
