// Regression (issue 17): an ASGI denial whose own content-length is above
// denialMaxBodySize went out with that head and was then cut off mid-body
// (FST_WS_GATE_BODY_STREAM_ERROR), so the client saw a 401 it could never
// read to the end. It is an invalid decision: refused before anything goes
// out, with a 500, FST_WS_GATE_INVALID_BODY logged once, and the app's send()
// rejecting with it. A length at the limit, and a 304's (which has no body),
// still go out as declared.
import t from 'tap'
import { asgi, type AsgiReceiveMessage } from '../../lib/index.js'
import { parseRaw, rawExchange, stableHead, start, upgradeRequest } from '../helpers.js'

const LIMIT = 16
const BODY_500 = '{"statusCode":500,"error":"Internal Server Error","message":"Internal Server Error"}'
const HEAD_500 = ['Content-Type: application/json; charset=utf-8', `Content-Length: ${BODY_500.length}`, 'Date: <date>', 'Connection: close']

interface Seen { start: unknown, body: unknown, next: AsgiReceiveMessage }

async function serve (t: tap.Test, rejectVia: 'http' | 'close-frame') {
  const seen = new Map<string, Seen>()
  const { port, logs } = await start(t, (fastify) => {
    fastify.get('/live', asgi(async (scope, receive, send) => {
      const [status, length] = scope.query_string.toString().split(',').map(Number)
      await receive()
      const started = await send({ type: 'websocket.http.response.start', status, headers: [['content-length', String(length)]] })
        .then(() => 'sent', (err: unknown) => err)
      const body = await send({ type: 'websocket.http.response.body', body: Buffer.alloc(status === 304 ? 0 : length, 'x') })
        .then(() => 'sent', (err: Error) => err.message)
      seen.set(scope.query_string.toString(), { start: started, body, next: await receive() })
    }))
  }, { denialMaxBodySize: LIMIT, rejectVia })
  return { port, logs, seen }
}

t.test('a declared content-length above denialMaxBodySize: 500 before anything goes out, logged once, send() rejects', async (t) => {
  const { port, logs, seen } = await serve(t, 'http')
  const res = await rawExchange(port, upgradeRequest(`/live?401,${LIMIT + 1}`))
  const { statusLine, headerLines, body } = parseRaw(res.text)
  t.equal(statusLine, 'HTTP/1.1 500 Internal Server Error')
  t.strictSame(stableHead(headerLines), HEAD_500)
  t.equal(body, BODY_500)
  t.equal(res.closed, true)
  const errors = logs.filter((line) => line.level >= 50)
  t.equal(errors.length, 1, 'one error line')
  t.equal(errors[0]?.msg, 'invalid handshake decision')
  const logged = errors[0]?.err as { code: string, message: string }
  t.equal(logged.code, 'FST_WS_GATE_INVALID_BODY')
  t.equal(logged.message, `Invalid denial body: its Content-Length of ${LIMIT + 1} is more than the ${LIMIT} bytes the denial body limit allows`)
  const app = seen.get(`401,${LIMIT + 1}`) as Seen
  t.equal((app.start as { code: string }).code, 'FST_WS_GATE_INVALID_BODY', 'the app\'s send() rejects with the same error')
  t.equal((app.start as Error).message, logged.message)
  t.equal(app.body, "Unexpected ASGI message 'websocket.http.response.body', after sending 'websocket.close' or response already completed.")
  t.strictSame(app.next, { type: 'websocket.disconnect', code: 1006 })
})

t.test('a declared content-length at the limit, and a 304\'s above it, go out as declared', async (t) => {
  const { port, logs, seen } = await serve(t, 'http')
  const atLimit = await rawExchange(port, upgradeRequest(`/live?401,${LIMIT}`))
  t.equal(parseRaw(atLimit.text).statusLine, 'HTTP/1.1 401 Unauthorized')
  t.strictSame(stableHead(parseRaw(atLimit.text).headerLines), [`content-length: ${LIMIT}`, 'Date: <date>', 'Connection: close'])
  t.equal(parseRaw(atLimit.text).body, 'x'.repeat(LIMIT))
  t.equal(atLimit.closed, true)
  const notModified = await rawExchange(port, upgradeRequest('/live?304,1000'))
  t.equal(parseRaw(notModified.text).statusLine, 'HTTP/1.1 304 Not Modified')
  t.strictSame(stableHead(parseRaw(notModified.text).headerLines), ['content-length: 1000', 'Date: <date>', 'Connection: close'])
  t.equal(parseRaw(notModified.text).body, '')
  t.strictSame(logs.filter((line) => line.level >= 40), [])
  t.equal(seen.get(`401,${LIMIT}`)?.start, 'sent')
  t.equal(seen.get('304,1000')?.start, 'sent')
})

t.test('with rejectVia close-frame the same denial is refused too: a decision valid in one mode is valid in the other', async (t) => {
  const { port, logs, seen } = await serve(t, 'close-frame')
  const res = await rawExchange(port, upgradeRequest(`/live?401,${LIMIT + 1}`))
  t.equal(parseRaw(res.text).statusLine, 'HTTP/1.1 500 Internal Server Error')
  t.equal(parseRaw(res.text).body, BODY_500)
  t.equal(logs.filter((line) => line.level >= 50).length, 1)
  t.equal((seen.get(`401,${LIMIT + 1}`)?.start as { code: string }).code, 'FST_WS_GATE_INVALID_BODY')
})
