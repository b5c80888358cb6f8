// curl with handcrafted upgrade headers (curl 7.88 speaks no WebSocket over
// http://): it prints exactly what came, status line, headers and body, and
// after a 101 the raw frames. A denial ends curl (exit 0: the server closes);
// after a 101 curl waits for more bytes until --max-time (exit 28).
import t from 'tap'
import { EVIL, startApp } from './app.js'
import {
  ACCEPTED, asText, ORIGIN_REFUSED, REFUSED, REFUSED_BUSY, REFUSED_FRAME, textFrame, TIMED_OUT, TOO_MANY, UNAUTHORIZED
} from './expected.js'
import { CURL, run } from './run.js'
import { KEY, maskDate } from './wire.js'

// After a 101, how long curl waits for the frames before giving up (exit 28).
const AFTER_101 = '2'

async function curl (port: number, path: string, headers: string[] = []): Promise<{ code: number | null, text: string }> {
  const args = [
    '-sS', '-i', '-N', '--http1.1', '--max-time', AFTER_101,
    '-H', 'Connection: Upgrade', '-H', 'Upgrade: websocket', '-H', 'Sec-WebSocket-Version: 13',
    '-H', `Sec-WebSocket-Key: ${KEY}`,
    ...headers.flatMap((header) => ['-H', header]),
    `http://127.0.0.1:${port}${path}`
  ]
  const { code, stdout } = await run(CURL, args)
  const text = stdout.toString('latin1')
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) return { code, text }
  // Mask only Date.
  return { code, text: maskDate(text.slice(0, end).split('\r\n')).join('\r\n') + text.slice(end) }
}

t.test('curl', async (t) => {
  const { port } = await startApp(t)
  const offer = ['Sec-WebSocket-Protocol: chat.v1, chat.v2']

  t.test('101: the head and the first frame, then curl waits (exit 28)', async (t) => {
    const { code, text } = await curl(port, '/http/rooms/lobby?token=secret', offer)
    t.equal(text, asText(ACCEPTED) + textFrame('welcome to lobby from a (protocol: chat.v2)').toString('latin1'))
    t.equal(code, 28)
  })

  t.test('401 over HTTP: status line, WWW-Authenticate, Set-Cookie and body, exactly', async (t) => {
    const { code, text } = await curl(port, '/http/rooms/lobby?token=wrong', offer)
    t.equal(text, asText(UNAUTHORIZED))
    t.equal(code, 0)
  })

  t.test('429 over HTTP with Retry-After', async (t) => {
    const { code, text } = await curl(port, '/http/rooms/busy?token=secret')
    t.equal(text, asText(TOO_MANY))
    t.equal(code, 0)
  })

  t.test('503 from the handshake timeout, in every mode', async (t) => {
    for (const prefix of ['/http', '/close', '/auto']) {
      const { code, text } = await curl(port, `${prefix}/rooms/slow?token=secret`, ['Origin: http://example.test'])
      t.equal(text, asText(TIMED_OUT), prefix)
      t.equal(code, 0)
    }
  })

  t.test('a refused Origin gets 403 over HTTP in every mode, before the handshake handler', async (t) => {
    for (const prefix of ['/http', '/close', '/auto']) {
      const { code, text } = await curl(port, `${prefix}/rooms/lobby?token=secret`, [...offer, `Origin: ${EVIL}`])
      t.equal(text, asText(ORIGIN_REFUSED), prefix)
      t.equal(code, 0)
    }
  })

  t.test('401 as a close frame: a 101 (first offer, Set-Cookie kept, WWW-Authenticate dropped), then close 4401', async (t) => {
    const { code, text } = await curl(port, '/close/rooms/lobby?token=wrong', offer)
    t.equal(text, asText(REFUSED) + REFUSED_FRAME.toString('latin1'))
    t.equal(code, 28)
  })

  t.test('429 as a close frame: no subprotocol offered, none selected; Retry-After dropped; close 4429', async (t) => {
    const { code, text } = await curl(port, '/close/rooms/busy?token=secret')
    const frame = Buffer.concat([Buffer.from([0x88, 22, 0x11, 0x4d]), Buffer.from('Too many connections')])
    t.equal(text, asText(REFUSED_BUSY) + frame.toString('latin1'))
    t.equal(code, 28)
  })

  t.test('rejectVia auto: HTTP without an Origin, a close frame with one', async (t) => {
    const plain = await curl(port, '/auto/rooms/lobby?token=wrong', offer)
    t.equal(plain.text, asText(UNAUTHORIZED))
    t.equal(plain.code, 0)
    const framed = await curl(port, '/auto/rooms/lobby?token=wrong', [...offer, 'Origin: http://example.test'])
    t.equal(framed.text, asText(REFUSED) + REFUSED_FRAME.toString('latin1'))
    t.equal(framed.code, 28)
  })
})
