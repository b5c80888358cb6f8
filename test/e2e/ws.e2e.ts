// The `ws` client (Node), as most code uses it: `new WebSocket(url, protocols)`
// and its events. With an 'unexpected-response' listener a denial's status,
// headers and body are readable (see test/helpers.ts connectWs); without one,
// a denial is an 'error' event whose message carries the status.
import { createRequire } from 'node:module'
import t from 'tap'
import WebSocket from 'ws'
import { connectWs, denied, opened } from '../helpers.js'
import { startApp } from './app.js'
import { BODY_401, BODY_429, BODY_503 } from './expected.js'

const WS_VERSION = (createRequire(__filename)('ws/package.json') as { version: string }).version

interface Events {
  events: string[]
  protocol: string
}

/** What a plain `ws` client reports, event by event, until its close (bounded). */
function plainWs (url: string, protocols: string[] = [], headers: Record<string, string> = {}): Promise<Events> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers })
    const events: string[] = []
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`no close within 5 s: ${events.join('; ')}`)) }, 5000)
    ws.on('open', () => events.push(`open ${ws.protocol || '(none)'}`))
    ws.on('message', (data) => { events.push(`message ${String(data)}`); ws.close(1000) })
    ws.on('error', (err) => events.push(`error ${err.message}`))
    ws.on('close', (code, reason) => {
      clearTimeout(timer)
      events.push(`close ${code} ${JSON.stringify(String(reason))}`)
      resolve({ events, protocol: ws.protocol })
    })
  })
}

t.test(`ws ${WS_VERSION}`, async (t) => {
  const { port } = await startApp(t)
  const url = (path: string): string => `ws://127.0.0.1:${port}${path}`

  t.test('101: open with the selected subprotocol', async (t) => {
    const { events } = await plainWs(url('/http/rooms/lobby?token=secret'), ['chat.v1', 'chat.v2'])
    t.strictSame(events, ['open chat.v2', 'message welcome to lobby from a (protocol: chat.v2)', 'close 1000 ""'])
  })

  t.test('a 101 that selects none of the offered subprotocols fails the connection', async (t) => {
    const { events } = await plainWs(url('/http/rooms/lobby?token=secret'), ['chat.v1'])
    t.strictSame(events, ['error Server sent no subprotocol', 'close 1006 ""'])
  })

  t.test('HTTP denials: an error naming the status; with unexpected-response, status, headers and body', async (t) => {
    const cases: Array<[string, number, string]> = [
      ['/http/rooms/lobby?token=wrong', 401, BODY_401],
      ['/http/rooms/busy?token=secret', 429, BODY_429],
      ['/close/rooms/slow?token=secret', 503, BODY_503]
    ]
    for (const [path, status, body] of cases) {
      const { events } = await plainWs(url(path))
      t.strictSame(events, [`error Unexpected server response: ${status}`, 'close 1006 ""'], path)
      const answer = denied(await connectWs(port, path))
      t.equal(answer.statusCode, status)
      t.equal(answer.body, body)
    }
    const unauthorized = denied(await connectWs(port, '/http/rooms/lobby?token=wrong'))
    t.equal(unauthorized.headers['www-authenticate'], 'Bearer realm="e2e"')
    t.strictSame(unauthorized.headers['set-cookie'], ['token=; Max-Age=0; Path=/'])
    const busy = denied(await connectWs(port, '/http/rooms/busy?token=secret'))
    t.equal(busy.headers['retry-after'], '30')
  })

  t.test('a close-frame refusal: open (first offer), then close with 4000 + status and the reason', async (t) => {
    const refused = await plainWs(url('/close/rooms/lobby?token=wrong'), ['chat.v1', 'chat.v2'])
    t.strictSame(refused.events, ['open chat.v1', 'close 4401 "Invalid token"'])
    const busy = await plainWs(url('/close/rooms/busy?token=secret'))
    t.strictSame(busy.events, ['open (none)', 'close 4429 "Too many connections"'])
    const missing = await plainWs(url('/close/rooms/kitchen?token=secret'))
    t.strictSame(missing.events, ['open (none)', 'close 4404 "No such room: kitchen"'])
    // The 101 kept Set-Cookie and dropped WWW-Authenticate.
    const head = opened(await connectWs(port, '/close/rooms/lobby?token=wrong', { protocols: ['chat.v1'] }))
    t.strictSame(head.headers['set-cookie'], ['token=; Max-Age=0; Path=/'])
    t.equal(head.headers['www-authenticate'], undefined)
    head.ws.close()
  })

  t.test('rejectVia auto: HTTP without an Origin (ws sends none), a close frame with one', async (t) => {
    const plain = await plainWs(url('/auto/rooms/lobby?token=wrong'))
    t.strictSame(plain.events, ['error Unexpected server response: 401', 'close 1006 ""'])
    const framed = await plainWs(url('/auto/rooms/lobby?token=wrong'), [], { Origin: 'http://example.test' })
    t.strictSame(framed.events, ['open (none)', 'close 4401 "Invalid token"'])
  })
})
