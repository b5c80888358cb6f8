// Python's websockets (Debian's python3-websockets 10.4), driven through
// client.py: the asyncio client most code uses (`websockets.connect`, "legacy"
// in 10.x) and the Sans-I/O ClientConnection, which also keeps the body.
import { join } from 'node:path'
import t from 'tap'
import { startApp } from './app.js'
import { BODY_401, BODY_429, BODY_503, TIMED_OUT, TOO_MANY, UNAUTHORIZED, type Expected } from './expected.js'
import { PYTHON, run } from './run.js'

const CLIENT = join(__dirname, 'client.py')

// The JSON client.py prints (fields present depending on the outcome).
interface PyResult {
  api: 'legacy' | 'sansio'
  version: string
  outcome: 'open' | 'invalid-status' | 'invalid-handshake'
  error?: string
  message?: string
  status?: number
  reason?: string
  headers?: Array<[string, string]>
  body?: string | null
  subprotocol?: string | null
  messages?: string[]
  frames?: Array<{ opcode: string, data: string }>
  closed?: { error?: string, code: number | null, reason: string | null }
}

async function python (api: 'legacy' | 'sansio', url: string, protocols: string[] = [], origin?: string): Promise<PyResult> {
  const args = [CLIENT, api, url, ...(origin === undefined ? [] : ['--origin', origin]), ...protocols]
  const { code, stdout, stderr } = await run(PYTHON, args)
  if (code !== 0) throw new Error(`client.py exited ${code}: ${stderr}`)
  return JSON.parse(stdout.toString('utf8'))
}

/** Headers as pairs, Date's value and the per-connection Sec-WebSocket-Accept masked. */
function masked (headers: Array<[string, string]> | undefined): Array<[string, string]> {
  return (headers ?? []).map(([name, value]) => {
    const lower = name.toLowerCase()
    return [name, lower === 'date' ? '<date>' : lower === 'sec-websocket-accept' ? '<accept>' : value]
  })
}

/** The head lines of an expected response as [name, value] pairs. */
function pairs (expected: Expected): Array<[string, string]> {
  return expected.head.map((line) => {
    const colon = line.indexOf(': ')
    return [line.slice(0, colon), line.slice(colon + 2)]
  })
}

t.test('python3 websockets', async (t) => {
  const { port } = await startApp(t)
  const url = (path: string): string => `ws://127.0.0.1:${port}${path}`

  t.test('it is Debian\'s 10.4', async (t) => {
    const result = await python('legacy', url('/http/rooms/lobby?token=wrong'))
    t.equal(result.version, '10.4')
  })

  t.test('legacy client: a denial is InvalidStatusCode with the exact status and headers (no body)', async (t) => {
    const result = await python('legacy', url('/http/rooms/lobby?token=wrong'), ['chat.v2'])
    t.strictSame({ ...result, headers: masked(result.headers) }, {
      api: 'legacy',
      version: '10.4',
      outcome: 'invalid-status',
      error: 'InvalidStatusCode',
      message: 'server rejected WebSocket connection: HTTP 401',
      status: 401,
      headers: pairs(UNAUTHORIZED)
    })
  })

  t.test('Sans-I/O client: a denial is InvalidStatus with a Response: status, reason, headers and body', async (t) => {
    const cases: Array<[string, number, string, Expected, string]> = [
      ['/http/rooms/lobby?token=wrong', 401, 'Unauthorized', UNAUTHORIZED, BODY_401],
      ['/http/rooms/busy?token=secret', 429, 'Too Many Requests', TOO_MANY, BODY_429],
      ['/http/rooms/slow?token=secret', 503, 'Service Unavailable', TIMED_OUT, BODY_503]
    ]
    for (const [path, status, reason, expected, body] of cases) {
      const result = await python('sansio', url(path))
      t.strictSame({ ...result, headers: masked(result.headers) }, {
        api: 'sansio',
        version: '10.4',
        status,
        reason,
        headers: pairs(expected),
        body,
        outcome: 'invalid-status',
        error: 'InvalidStatus',
        message: `server rejected WebSocket connection: HTTP ${status}`
      }, path)
    }
  })

  t.test('an accepted connection negotiates the subprotocol and gets the Set-Cookie', async (t) => {
    const head: Array<[string, string]> = [
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Accept', '<accept>'],
      ['Sec-WebSocket-Protocol', 'chat.v2'],
      ['Set-Cookie', 'room=lobby; Path=/; HttpOnly']
    ]
    const legacy = await python('legacy', url('/http/rooms/lobby?token=secret'), ['chat.v1', 'chat.v2'])
    t.strictSame({ ...legacy, headers: masked(legacy.headers) }, {
      api: 'legacy',
      version: '10.4',
      outcome: 'open',
      subprotocol: 'chat.v2',
      headers: head,
      messages: ['welcome to lobby from a (protocol: chat.v2)', 'echo: hello']
    })
    const sansio = await python('sansio', url('/http/rooms/lobby?token=secret'), ['chat.v1', 'chat.v2'])
    t.strictSame({ ...sansio, headers: masked(sansio.headers) }, {
      api: 'sansio',
      version: '10.4',
      status: 101,
      reason: 'Switching Protocols',
      headers: head,
      body: null,
      outcome: 'open',
      subprotocol: 'chat.v2',
      frames: [{ opcode: 'TEXT', data: 'welcome to lobby from a (protocol: chat.v2)' }]
    })
  })

  t.test('a 101 that selects none of the offered subprotocols is accepted, with subprotocol None', async (t) => {
    const result = await python('legacy', url('/http/rooms/lobby?token=secret'), ['chat.v1'])
    t.equal(result.outcome, 'open')
    t.equal(result.subprotocol, null)
    t.strictSame(result.messages, ['welcome to lobby from a (protocol: none)', 'echo: hello'])
  })

  t.test('a close-frame refusal: the connection opens (first offer), then recv() raises ConnectionClosedError 4401', async (t) => {
    const result = await python('legacy', url('/close/rooms/lobby?token=wrong'), ['chat.v1', 'chat.v2'])
    t.strictSame({ ...result, headers: masked(result.headers) }, {
      api: 'legacy',
      version: '10.4',
      outcome: 'open',
      subprotocol: 'chat.v1',
      headers: [
        ['Upgrade', 'websocket'],
        ['Connection', 'Upgrade'],
        ['Sec-WebSocket-Accept', '<accept>'],
        ['Sec-WebSocket-Protocol', 'chat.v1'],
        ['Set-Cookie', 'token=; Max-Age=0; Path=/']
      ],
      messages: [],
      closed: { error: 'ConnectionClosedError', code: 4401, reason: 'Invalid token' }
    })
    const sansio = await python('sansio', url('/close/rooms/busy?token=secret'))
    t.equal(sansio.outcome, 'open')
    t.equal(sansio.subprotocol, null)
    t.strictSame(sansio.closed, { code: 4429, reason: 'Too many connections' })
  })

  t.test('rejectVia auto: HTTP 401 without an Origin, close 4401 with one', async (t) => {
    const plain = await python('legacy', url('/auto/rooms/lobby?token=wrong'))
    t.equal(plain.outcome, 'invalid-status')
    t.equal(plain.status, 401)
    const framed = await python('legacy', url('/auto/rooms/lobby?token=wrong'), [], 'http://example.test')
    t.equal(framed.outcome, 'open')
    t.strictSame(framed.closed, { error: 'ConnectionClosedError', code: 4401, reason: 'Invalid token' })
  })

  t.test('the handshake timeout stays HTTP on a close-frame route: InvalidStatusCode 503', async (t) => {
    const result = await python('legacy', url('/close/rooms/slow?token=secret'))
    t.equal(result.outcome, 'invalid-status')
    t.equal(result.status, 503)
    t.strictSame(masked(result.headers), pairs(TIMED_OUT))
  })
})
