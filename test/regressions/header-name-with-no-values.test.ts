// A header given as a name with an empty list of values (`{ 'Bad Name': [] }`)
// was never checked, so an invalid or forbidden name passed silently (found
// by the property test's oracle). Names are checked whatever their values,
// as Node's setHeader() does.
import t from 'tap'
import { accept, reject } from '../../lib/index.js'
import { connectWs, denied, start } from '../helpers.js'

t.test('an invalid or forbidden header name with no values is an invalid decision', async (t) => {
  const { port, logs } = await start(t, (app) => {
    app.get('/bad-name', { websocket: true, handshake: () => reject(401, undefined, { headers: { 'Bad Name': [] } }) }, () => {})
    app.get('/forbidden', { websocket: true, handshake: () => reject(401, undefined, { headers: { Connection: [] } }) }, () => {})
    app.get('/accept', { websocket: true, handshake: () => accept({ headers: { 'Sec-WebSocket-Extensions': [] } }) }, () => {})
    app.get('/fine', { websocket: true, handshake: () => reject(401, undefined, { headers: { 'X-Nothing': [] } }) }, () => {})
  })
  for (const [path, code] of [['/bad-name', 'FST_WS_GATE_INVALID_HEADER'], ['/forbidden', 'FST_WS_GATE_FORBIDDEN_HEADER'], ['/accept', 'FST_WS_GATE_FORBIDDEN_HEADER']]) {
    logs.length = 0
    t.equal(denied(await connectWs(port, path)).statusCode, 500, path)
    t.strictSame(logs.filter((line) => line.level === 50).map((line) => (line.err as { code: string }).code), [code], path)
  }
  const fine = denied(await connectWs(port, '/fine'))
  t.equal(fine.statusCode, 401)
  t.equal(fine.headers['x-nothing'], undefined, 'a valid name with no values gives no line')
})
