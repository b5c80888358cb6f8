// Contract point 9: malformed WebSocket requests are answered before any
// application code runs, with the status RFC 6455 asks for.
import t from 'tap'
import { accept } from '../lib/index.js'
import { connectWs, opened, parseRaw, rawExchange, stableHead, start, upgradeRequest } from './helpers.js'

function errorJson (status: number, error: string, code: string, message: string): string {
  return JSON.stringify({ statusCode: status, code, error, message })
}

const BAD = 'FST_WS_GATE_BAD_REQUEST'
const cases: Array<[string, string, number, string, string[], string]> = [
  ['no Sec-WebSocket-Key', upgradeRequest('/ws', { 'Sec-WebSocket-Key': null }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Missing or invalid Sec-WebSocket-Key header')],
  ['a short Sec-WebSocket-Key', upgradeRequest('/ws', { 'Sec-WebSocket-Key': 'c2hvcnQ=' }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Missing or invalid Sec-WebSocket-Key header')],
  ['a Sec-WebSocket-Key with a character outside base64', upgradeRequest('/ws', { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25j!Q==' }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Missing or invalid Sec-WebSocket-Key header')],
  ['a Sec-WebSocket-Key with non-ASCII bytes', upgradeRequest('/ws', { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25j\u00e9==' }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Missing or invalid Sec-WebSocket-Key header')],
  ['a Sec-WebSocket-Key of 24 characters without padding', upgradeRequest('/ws', { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQAA' }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Missing or invalid Sec-WebSocket-Key header')],
  ['a Sec-WebSocket-Key that does not end in ==', upgradeRequest('/ws', { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ=A' }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Missing or invalid Sec-WebSocket-Key header')],
  ['two Sec-WebSocket-Key lines', upgradeRequest('/ws', { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Missing or invalid Sec-WebSocket-Key header')],
  ['Upgrade: h2c', upgradeRequest('/ws', { Upgrade: 'h2c' }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Missing or invalid Upgrade header: expected "websocket"')],
  ['HTTP/1.0', upgradeRequest('/ws', {}, 'GET /ws HTTP/1.0'), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'A WebSocket upgrade needs HTTP/1.1')],
  ['an empty element in Sec-WebSocket-Protocol', upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': 'a,,b' }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Invalid Sec-WebSocket-Protocol header')],
  ['a space inside a subprotocol', upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': 'chat v2' }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Invalid Sec-WebSocket-Protocol header')],
  ['a repeated subprotocol', upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': 'a, a' }), 400, 'Bad Request', [],
    errorJson(400, 'Bad Request', BAD, 'Invalid Sec-WebSocket-Protocol header')],
  ['Sec-WebSocket-Version: 8', upgradeRequest('/ws', { 'Sec-WebSocket-Version': '8' }), 426, 'Upgrade Required', ['Sec-WebSocket-Version: 13'],
    errorJson(426, 'Upgrade Required', 'FST_WS_GATE_UNSUPPORTED_VERSION', 'Unsupported Sec-WebSocket-Version "8": this server speaks version 13')],
  ['no Sec-WebSocket-Version', upgradeRequest('/ws', { 'Sec-WebSocket-Version': null }), 426, 'Upgrade Required', ['Sec-WebSocket-Version: 13'],
    errorJson(426, 'Upgrade Required', 'FST_WS_GATE_UNSUPPORTED_VERSION', 'Unsupported Sec-WebSocket-Version (none): this server speaks version 13')],
  ['POST', upgradeRequest('/ws', {}, 'POST /ws HTTP/1.1'), 405, 'Method Not Allowed', ['Allow: GET'],
    errorJson(405, 'Method Not Allowed', 'FST_WS_GATE_METHOD_NOT_ALLOWED', 'A WebSocket upgrade must use GET, not POST')]
]

t.test('malformed upgrades are answered before any hook or handler runs', async (t) => {
  let appCode = 0
  const { port, logs } = await start(t, (app) => {
    app.addHook('onRequest', async () => { appCode++ })
    app.get('/ws', { websocket: true, handshake: () => { appCode++; return accept() } }, () => { appCode++ })
  })
  for (const [name, request, status, phrase, extra, body] of cases) {
    logs.length = 0
    const res = await rawExchange(port, request)
    const { statusLine, headerLines, body: got } = parseRaw(res.text)
    t.equal(statusLine, `HTTP/1.1 ${status} ${phrase}`, name)
    t.strictSame(stableHead(headerLines), [
      'Content-Type: application/json; charset=utf-8', ...extra, `Content-Length: ${body.length}`, 'Date: <date>', 'Connection: close'
    ], `${name}: headers`)
    t.equal(got, body, `${name}: body`)
    t.equal(res.closed, true, `${name}: connection closed`)
    const debug = logs.find((line) => line.msg === 'malformed WebSocket upgrade request')
    t.equal(debug?.level, 20, `${name}: logged at debug`)
    t.equal(debug?.statusCode, status)
  }
  t.equal(appCode, 0, 'no application code ran')

  const outcome = opened(await connectWs(port, '/ws'))
  outcome.ws.close()
  t.equal(appCode, 3, 'the server keeps serving valid upgrades')
})

t.test('Upgrade: websocket without Connection: upgrade is answered 400 before any application code', async (t) => {
  let appCode = 0
  const { port, logs } = await start(t, (app) => {
    app.addHook('onRequest', async () => { appCode++ })
    app.setErrorHandler((_err, _request, reply) => { appCode++; reply.code(418).send('swallowed') })
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
    app.get('/plain', async () => 'plain')
  })
  const body = errorJson(400, 'Bad Request', BAD, 'Missing or invalid Connection header: expected "upgrade"')
  for (const [path, connection] of [['/ws', 'keep-alive'], ['/plain', null], ['/nowhere', 'close']] as const) {
    logs.length = 0
    const res = await rawExchange(port, upgradeRequest(path, { Connection: connection }))
    const { statusLine, headerLines, body: got } = parseRaw(res.text)
    t.equal(statusLine, 'HTTP/1.1 400 Bad Request', path)
    t.strictSame(stableHead(headerLines), [
      'Content-Type: application/json; charset=utf-8', `Content-Length: ${body.length}`, 'Connection: close', 'Date: <date>'
    ])
    t.equal(got, body)
    t.equal(res.closed, true)
    t.equal(logs.find((line) => line.msg === 'malformed WebSocket upgrade request')?.level, 20)
  }
  t.equal(appCode, 0, 'no hook, handler or error handler ran')
  const plain = await fetch(`http://127.0.0.1:${port}/plain`)
  t.equal(await plain.text(), 'plain', 'ordinary requests still reach Fastify')
  t.equal(appCode, 1)
})

t.test('only space and tab are optional whitespace around subprotocols', async (t) => {
  let appCode = 0
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => { appCode++; return accept({ protocol: 'chat' }) } }, () => {})
  })
  const res = parseRaw((await rawExchange(port, upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': 'chat\u00a0' }))).text)
  t.equal(res.statusLine, 'HTTP/1.1 400 Bad Request')
  t.equal(res.body, errorJson(400, 'Bad Request', BAD, 'Invalid Sec-WebSocket-Protocol header'))
  t.equal(appCode, 0)
  const upgrade = parseRaw((await rawExchange(port, upgradeRequest('/ws', { Upgrade: '\u00a0websocket' }))).text)
  t.equal(upgrade.statusLine, 'HTTP/1.1 400 Bad Request')
})
