// Regression (issue 17): reject(401, undefined, { body: { toJSON: () => undefined } })
// was logged as Node's ERR_INVALID_ARG_TYPE (Buffer.from(undefined)) instead of
// the documented FST_WS_GATE_INVALID_BODY. A body that serialises to nothing is
// an invalid decision like any other: 500, one error line with the gate's code,
// over HTTP and with rejectVia 'close-frame' alike.
import t from 'tap'
import { reject } from '../../lib/index.js'
import { parseRaw, rawExchange, stableHead, start, upgradeRequest } from '../helpers.js'

const BODY = '{"statusCode":500,"error":"Internal Server Error","message":"Internal Server Error"}'
const MESSAGE = 'Invalid denial body: it serialises to nothing as JSON (its toJSON() returned undefined, a function or a symbol)'

const bodies: Array<[string, () => Record<string, unknown>]> = [
  ['toJSON returns undefined', () => ({ toJSON: () => undefined })],
  ['toJSON returns a function', () => ({ toJSON: () => () => {} })],
  ['toJSON returns a symbol', () => ({ toJSON: () => Symbol('nothing') })]
]

for (const rejectVia of ['http', 'close-frame'] as const) {
  t.test(`a JSON body that serialises to nothing is FST_WS_GATE_INVALID_BODY (rejectVia ${rejectVia})`, async (t) => {
    const byName = new Map(bodies)
    const { port, logs } = await start(t, (app) => {
      app.get('/ws', {
        websocket: true,
        handshake: (request) => reject(401, undefined, { body: (byName.get(request.headers['x-case'] as string) as () => Record<string, unknown>)() })
      }, () => { throw new Error('the WebSocket handler must not run') })
    }, { rejectVia })
    for (const [name] of bodies) {
      logs.length = 0
      const res = await rawExchange(port, upgradeRequest('/ws', { 'X-Case': name }))
      const { statusLine, headerLines, body } = parseRaw(res.text)
      t.equal(statusLine, 'HTTP/1.1 500 Internal Server Error', name)
      t.strictSame(stableHead(headerLines), [
        'Content-Type: application/json; charset=utf-8', `Content-Length: ${BODY.length}`, 'Date: <date>', 'Connection: close'
      ], name)
      t.equal(body, BODY, name)
      t.equal(res.closed, true, name)
      const errors = logs.filter((line) => line.level >= 50)
      t.equal(errors.length, 1, `${name}: one error line`)
      t.equal(errors[0]?.msg, 'invalid handshake decision', name)
      const err = errors[0]?.err as { code: string, message: string }
      t.equal(err?.code, 'FST_WS_GATE_INVALID_BODY', name)
      t.equal(err?.message, MESSAGE, name)
    }
  })
}
