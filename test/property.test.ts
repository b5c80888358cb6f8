// Property-based tests (fast-check): whatever an application passes to
// reject() or accept(), what reaches the wire is a valid HTTP response (parsed
// by Node's own HTTP client parser), never a 101 without a valid
// Sec-WebSocket-Accept, never a header the application did not give (beyond
// framing), and the server never crashes.
import { createHash } from 'node:crypto'
import { request, type IncomingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'
import fc from 'fast-check'
import t from 'tap'
import { accept, reject, type HandshakeDecision } from '../lib/index.js'
import { connectWs, opened, start, KEY } from './helpers.js'

const RUNS = 250
const EXPECTED_ACCEPT = createHash('sha1').update(KEY + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
const FRAMING = new Set(['content-type', 'content-length', 'transfer-encoding', 'date', 'connection'])
const HANDSHAKE = new Set(['upgrade', 'connection', 'sec-websocket-accept', 'sec-websocket-protocol'])

interface Seen { status: number, headers: IncomingHttpHeaders, accept?: string }

// One exchange through Node's HTTP client: its parser rejects any malformed
// response with an 'error' (HPE_...), which fails the property.
function exchange (port: number, id: string, protocols?: string): Promise<Seen> {
  return new Promise((resolve, _reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path: '/p',
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': KEY,
        'Sec-WebSocket-Version': '13',
        'X-Case': id,
        ...(protocols === undefined ? {} : { 'Sec-WebSocket-Protocol': protocols })
      }
    })
    req.setTimeout(5000, () => req.destroy(new Error('no answer within 5 s')))
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      resolve({ status: res.statusCode as number, headers: res.headers, accept: res.headers['sec-websocket-accept'] })
    })
    req.on('response', (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode as number, headers: res.headers }))
      res.on('error', _reject)
    })
    req.on('error', _reject)
    req.end()
  })
}

const tchar = fc.constantFrom(...'!#$%&\'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'.split(''))
const headerName = fc.oneof(
  fc.string({ unit: tchar, minLength: 1, maxLength: 20 }),
  fc.constantFrom('Set-Cookie', 'WWW-Authenticate', 'Retry-After', 'content-length', 'Connection', 'Sec-WebSocket-Accept', 'Upgrade', 'Transfer-Encoding', 'Date', 'Content-Type'),
  fc.string({ maxLength: 20 })
)
const headerValue = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: fc.constantFrom('\r', '\n', '\0', 'a', ' ', '\t', '\u00e9', '\u2603'), maxLength: 10 }),
  fc.integer(),
  fc.double()
)
const headers = fc.oneof(
  fc.constant(undefined),
  fc.array(fc.tuple(headerName, headerValue), { maxLength: 5 }),
  fc.dictionary(headerName, fc.oneof(headerValue, fc.array(headerValue, { maxLength: 3 })), { maxKeys: 4 })
)
const status = fc.oneof(
  fc.integer({ min: 200, max: 599 }),
  fc.integer({ min: -1000, max: 2000 }),
  fc.constantFrom(100, 101, 199, 204, 304, 600, NaN, 401.5)
)
const body = fc.oneof(
  fc.constant(undefined),
  fc.string({ maxLength: 100 }),
  fc.uint8Array({ maxLength: 100 }),
  fc.object({ maxDepth: 2 }),
  fc.array(fc.string({ maxLength: 10 }), { maxLength: 4 }).map((parts) => ({ stream: parts })),
  fc.integer()
)
const reason = fc.option(fc.string({ maxLength: 40 }), { nil: undefined })

t.test(`reject() with random statuses, reasons, headers and bodies (${RUNS} runs)`, async (t) => {
  const decisions = new Map<string, () => HandshakeDecision>()
  const { port } = await start(t, (app) => {
    app.get('/p', { websocket: true, handshake: (request) => (decisions.get(request.headers['x-case'] as string) as () => HandshakeDecision)() }, () => {})
    app.get('/ok', { websocket: true, handshake: () => accept() }, () => {})
  })
  let id = 0
  const statuses = new Map<number, number>()
  await fc.assert(fc.asyncProperty(status, reason, headers, body, async (code, why, given, payload) => {
    const key = String(++id)
    decisions.set(key, () => reject(code, why, {
      headers: given as never,
      body: (payload as { stream?: string[] } | undefined)?.stream !== undefined ? Readable.from((payload as { stream: string[] }).stream) : payload as never
    }))
    const seen = await exchange(port, key)
    decisions.delete(key)
    statuses.set(seen.status, (statuses.get(seen.status) ?? 0) + 1)
    if (seen.status === 101) return false
    if (seen.status !== 500 && seen.status !== code) return false
    const allowed = new Set(FRAMING)
    const names = given === undefined ? [] : Array.isArray(given) ? given.map(([name]) => name) : Object.keys(given)
    for (const name of names) allowed.add(String(name).toLowerCase())
    return Object.keys(seen.headers).every((name) => allowed.has(name))
  }), { numRuns: RUNS })
  t.comment(`${RUNS} random denials; statuses seen: ${[...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')}`)
  t.ok(statuses.get(500) !== undefined && statuses.size > 10, 'both valid and invalid decisions were generated')
  const ok = opened(await connectWs(port, '/ok'))
  ok.ws.close()
  t.pass('the server is still serving')
})

t.test(`accept() with random subprotocols and headers (${RUNS} runs)`, async (t) => {
  const decisions = new Map<string, () => HandshakeDecision>()
  const { port } = await start(t, (app) => {
    app.get('/p', { websocket: true, handshake: (request) => (decisions.get(request.headers['x-case'] as string) as () => HandshakeDecision)() }, () => {})
  })
  let id = 0
  let upgrades = 0
  const offered = fc.array(fc.string({ unit: tchar, minLength: 1, maxLength: 8 }), { maxLength: 3 }).map((list) => [...new Set(list)])
  await fc.assert(fc.asyncProperty(offered, fc.option(fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), { nil: undefined }), fc.boolean(), headers, async (protocols, other, pickOffered, given) => {
    const key = String(++id)
    const protocol = pickOffered && protocols.length > 0 ? protocols[0] : other
    decisions.set(key, () => accept({ protocol: protocol as string | undefined, headers: given as never }))
    const seen = await exchange(port, key, protocols.length > 0 ? protocols.join(', ') : undefined)
    decisions.delete(key)
    if (seen.status === 500) return true
    if (seen.status !== 101 || seen.accept !== EXPECTED_ACCEPT) return false
    upgrades++
    if (seen.headers['sec-websocket-protocol'] !== (protocol === undefined ? undefined : protocol)) return false
    const allowed = new Set(HANDSHAKE)
    const names = given === undefined ? [] : Array.isArray(given) ? given.map(([name]) => name) : Object.keys(given)
    for (const name of names) allowed.add(String(name).toLowerCase())
    return Object.keys(seen.headers).every((name) => allowed.has(name))
  }), { numRuns: RUNS })
  t.comment(`${RUNS} random accepts, ${upgrades} of them valid and answered 101, the rest 500`)
  t.ok(upgrades > 0 && upgrades < RUNS, 'both valid and invalid accepts were generated')
})
