// Property-based tests (fast-check). Each generated decision is judged by an
// oracle written from the documented rules (README "Usage"; docs/api.md
// "accept()", "reject()", "Headers" and "What happens when"), never by the
// code under test: a valid decision must reach the wire exactly as documented
// (its status, every header line in order, its body), an invalid one must get
// exactly the documented 500 and one error log line with the code the oracle
// names. Node's own HTTP client parses every response (a malformed one fails
// the property), every 101 carries the right Sec-WebSocket-Accept, and the
// server keeps serving.
//
// Where a decision breaks several rules the docs do not say which one is
// reported; the oracle names the first in the order the decision is read:
// for reject(), the status, then the headers in the order given (for each
// line: its name, whether the gate owns it, its value), then the reason, then
// the body; for accept(), the protocol, then the headers.
import { createHash } from 'node:crypto'
import { request, STATUS_CODES } from 'node:http'
import { Readable } from 'node:stream'
import fc from 'fast-check'
import t from 'tap'
import { accept, reject, type HandshakeDecision } from '../lib/index.js'
import { connectWs, opened, start, KEY, type LogLine } from './helpers.js'

const RUNS = 250

// RFC 6455 §4.2.2: base64(SHA-1(key + GUID)).
const EXPECTED_ACCEPT = createHash('sha1').update(KEY + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')

// ---------------------------------------------------------------------------
// The oracle.

type Lines = Array<[name: string, value: string]>

interface Expected {
  status: number
  /** Every header line, in order, as Node's client parser reports them; the gate's own Date as DATE. */
  head: Lines
  /** The body; not read for a 101. */
  body: Buffer
  /** For an invalid decision: the code of its one error log line. */
  code?: string
  /** For a valid one: what kind of answer it is, for the summary. */
  kind?: string
}

const DATE = '<date>'
const JSON_TYPE = 'application/json; charset=utf-8'
const EMPTY = Buffer.alloc(0)
// docs/api.md, "What happens when": the body of every invalid decision's 500.
const INTERNAL_ERROR = Buffer.from('{"statusCode":500,"error":"Internal Server Error","message":"Internal Server Error"}')
// docs/api.md, denialMaxBodySize.
const MAX_BODY = 64 * 1024

// RFC 9110 §5.6.2: token = 1*tchar.
const TCHAR = '!#$%&\'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'
const TCHARS = new Set(TCHAR)
function isToken (name: string): boolean {
  return name.length > 0 && [...name].every((char) => TCHARS.has(char))
}

// docs/api.md, "Headers": written by the gate, refused from the application.
function isGateOwned (name: string): boolean {
  const lower = name.toLowerCase()
  return ['upgrade', 'connection', 'content-length', 'transfer-encoding'].includes(lower) || lower.startsWith('sec-websocket-')
}

// docs/api.md, "Headers": visible ASCII, space, tab; and in a denial (not a
// 101) obs-text, U+0080-U+00FF.
function isFieldValue (value: string, obsText: boolean): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i)
    if (!(code === 0x09 || (code >= 0x20 && code <= 0x7e) || (obsText && code >= 0x80 && code <= 0xff))) return false
  }
  return true
}

class Invalid {
  constructor (readonly code: string) {}
}

/** The header lines `input` stands for, or the code of the first rule it breaks. */
function headerLines (input: unknown, obsText: boolean): Lines | Invalid {
  if (input === undefined) return []
  // An object, or a list of [name, value] pairs (an object's values may be lists).
  if (typeof input !== 'object' || input === null) return new Invalid('FST_WS_GATE_INVALID_HEADER')
  const entries: unknown[] = Array.isArray(input) ? input : Object.entries(input)
  const lines: Lines = []
  for (const entry of entries) {
    if (!Array.isArray(entry) || entry.length !== 2) return new Invalid('FST_WS_GATE_INVALID_HEADER')
    const [name, value] = entry as [unknown, unknown]
    // The name is checked even when an empty list gives it no line.
    if (typeof name !== 'string' || !isToken(name)) return new Invalid('FST_WS_GATE_INVALID_HEADER')
    if (isGateOwned(name)) return new Invalid('FST_WS_GATE_FORBIDDEN_HEADER')
    for (const item of Array.isArray(value) ? value as unknown[] : [value]) {
      // A string, or a finite number (sent as JavaScript writes it).
      const text = typeof item === 'number' && Number.isFinite(item) ? String(item) : item
      if (typeof text !== 'string' || !isFieldValue(text, obsText)) return new Invalid('FST_WS_GATE_INVALID_HEADER')
      lines.push([name, text])
    }
  }
  return lines
}

/** What Node's client parser reports of a header line: RFC 9110 §5.5, optional whitespace around the value dropped. */
function parsed ([name, value]: [string, string]): [string, string] {
  return [name, value.replace(/^[ \t]+|[ \t]+$/g, '')]
}

const has = (lines: Lines, lower: string): boolean => lines.some(([name]) => name.toLowerCase() === lower)

function invalid (code: string): Expected {
  return {
    status: 500,
    head: [['Content-Type', JSON_TYPE], ['Content-Length', String(INTERNAL_ERROR.length)], ['Date', DATE], ['Connection', 'close']],
    body: INTERNAL_ERROR,
    code
  }
}

/** A stream body, made fresh from its chunks each time the decision is made. */
class StreamBody {
  constructor (readonly chunks: string[]) {}

  // How fast-check prints it in a counterexample.
  [fc.toStringMethod] (): string {
    return `Readable.from(${JSON.stringify(this.chunks)})`
  }
}

function isPlainObject (value: object): boolean {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** reject(status, reason, { headers, body }), judged by docs/api.md "reject()" and README "Usage". */
function judgeReject (status: unknown, reason: unknown, headers: unknown, body: unknown): Expected {
  // An integer from 200 to 599.
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599) return invalid('FST_WS_GATE_INVALID_STATUS')
  const lines = headerLines(headers, true)
  if (lines instanceof Invalid) return invalid(lines.code)
  if (reason !== undefined && typeof reason !== 'string') return invalid('FST_WS_GATE_INVALID_BODY')
  // Your headers in your order, then Content-Type (if defaulted), the
  // framing, Date (unless you gave one), Connection: close.
  const head = (type: string | undefined, framing: Lines): Lines => [
    ...lines.map(parsed),
    ...(type === undefined || has(lines, 'content-type') ? [] : [['Content-Type', type] as [string, string]]),
    ...framing,
    ...(has(lines, 'date') ? [] : [['Date', DATE] as [string, string]]),
    ['Connection', 'close']
  ]
  // 204 and 304 carry no body and no framing headers; whatever body was given is dropped.
  if (status === 204 || status === 304) return { status, head: head(undefined, []), body: EMPTY, kind: String(status) }
  let bytes: Buffer
  let type: string
  let kind: string
  if (body === undefined) {
    // With a reason, Fastify's error shape; without, an empty body.
    if (reason === undefined) return { status, head: head(undefined, [['Content-Length', '0']]), body: EMPTY, kind: 'empty' }
    bytes = Buffer.from(JSON.stringify({ statusCode: status, error: STATUS_CODES[status] ?? 'Error', message: reason }))
    type = JSON_TYPE
    kind = 'reason'
  } else if (typeof body === 'string') {
    bytes = Buffer.from(body, 'utf8')
    type = 'text/plain; charset=utf-8'
    kind = 'text'
  } else if (body instanceof Uint8Array) {
    bytes = Buffer.from(body)
    type = 'application/octet-stream'
    kind = 'bytes'
  } else if (body instanceof StreamBody) {
    // Chunked, each chunk as UTF-8.
    return { status, head: head('application/octet-stream', [['Transfer-Encoding', 'chunked']]), body: Buffer.from(body.chunks.join(''), 'utf8'), kind: 'stream' }
  } else if (typeof body === 'object' && body !== null && (Array.isArray(body) || isPlainObject(body))) {
    let json: string | undefined
    try {
      json = JSON.stringify(body)
    } catch {
      return invalid('FST_WS_GATE_INVALID_BODY')
    }
    if (typeof json !== 'string') return invalid('FST_WS_GATE_INVALID_BODY')
    bytes = Buffer.from(json)
    type = JSON_TYPE
    kind = 'json'
  } else {
    return invalid('FST_WS_GATE_INVALID_BODY')
  }
  if (bytes.length > MAX_BODY) return invalid('FST_WS_GATE_INVALID_BODY')
  return { status, head: head(type, [['Content-Length', String(bytes.length)]]), body: bytes, kind }
}

/** accept({ protocol, headers }) for a client that offered `offered`, judged by docs/api.md "accept()". */
function judgeAccept (protocol: unknown, headers: unknown, offered: string[]): Expected {
  if (protocol !== undefined && (typeof protocol !== 'string' || !offered.includes(protocol))) return invalid('FST_WS_GATE_PROTOCOL_NOT_OFFERED')
  // Only ASCII in a 101.
  const lines = headerLines(headers, false)
  if (lines instanceof Invalid) return invalid(lines.code)
  return {
    status: 101,
    head: [
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Accept', EXPECTED_ACCEPT],
      ...(protocol === undefined ? [] : [['Sec-WebSocket-Protocol', protocol] as [string, string]]),
      ...lines.map(parsed)
    ],
    body: EMPTY,
    kind: protocol === undefined ? 'no protocol' : 'protocol'
  }
}

// ---------------------------------------------------------------------------
// The wire.

interface Seen { status: number, head: Lines, body: Buffer }

// RFC 9110 §5.6.7 IMF-fixdate, as the gate writes Date.
const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/

function pairs (raw: string[]): Lines {
  const lines: Lines = []
  for (let i = 0; i < raw.length; i += 2) {
    lines.push([raw[i], raw[i] === 'Date' && IMF_FIXDATE.test(raw[i + 1]) ? DATE : raw[i + 1]])
  }
  return lines
}

// One exchange through Node's HTTP client: its parser rejects any malformed
// response with an 'error' (HPE_...), which fails the property.
function exchange (port: number, id: string, protocols?: string): Promise<Seen> {
  return new Promise((resolve, _reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path: '/p',
      agent: false,
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
      resolve({ status: res.statusCode as number, head: pairs(res.rawHeaders), body: EMPTY })
    })
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode as number, head: pairs(res.rawHeaders), body: Buffer.concat(chunks) }))
      res.on('error', _reject)
    })
    req.on('error', _reject)
    req.end()
  })
}

/** Throws, with both sides, unless the exchange and the log lines it left are what the oracle expects. */
function check (expected: Expected, seen: Seen, logged: LogLine[]): void {
  const problems: string[] = []
  if (seen.status !== expected.status) problems.push(`status ${seen.status}, expected ${expected.status}`)
  if (JSON.stringify(seen.head) !== JSON.stringify(expected.head)) {
    problems.push(`head ${JSON.stringify(seen.head)}, expected ${JSON.stringify(expected.head)}`)
  }
  if (expected.status !== 101 && !seen.body.equals(expected.body)) {
    problems.push(`body ${JSON.stringify(seen.body.toString('latin1'))}, expected ${JSON.stringify(expected.body.toString('latin1'))}`)
  }
  const errors = logged.filter((line) => line.level >= 50)
  const codes = errors.map((line) => `${line.msg}: ${(line.err as { code?: string } | undefined)?.code}`)
  const wanted = expected.code === undefined ? [] : [`invalid handshake decision: ${expected.code}`]
  if (JSON.stringify(codes) !== JSON.stringify(wanted)) problems.push(`error log lines ${JSON.stringify(codes)}, expected ${JSON.stringify(wanted)}`)
  if (problems.length > 0) throw new Error(problems.join('; '))
}

function tally (counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1)
}

function summary (counts: Map<string, number>): string {
  return [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([key, n]) => `${key}×${n}`).join(' ')
}

// ---------------------------------------------------------------------------
// The generators: weighted so that about as many decisions are valid as not.

const tchar = fc.constantFrom(...TCHAR.split(''))
const headerName = fc.oneof(
  { arbitrary: fc.string({ unit: tchar, minLength: 1, maxLength: 20 }), weight: 4 },
  {
    arbitrary: fc.constantFrom(
      'Set-Cookie', 'WWW-Authenticate', 'Retry-After', 'Date', 'Content-Type', 'Location', 'Cache-Control', 'date', 'content-type',
      'content-length', 'Connection', 'Sec-WebSocket-Accept', 'sec-websocket-protocol', 'Upgrade', 'Transfer-Encoding'
    ),
    weight: 2
  },
  { arbitrary: fc.string({ maxLength: 20 }), weight: 1 }
)
const headerValue = fc.oneof(
  { arbitrary: fc.string({ maxLength: 40 }), weight: 4 },
  { arbitrary: fc.string({ unit: fc.constantFrom('a', ' ', '\t', '\u0080', '\u00e9', '\u00ff'), maxLength: 10 }), weight: 1 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 20 }), weight: 1 },
  { arbitrary: fc.string({ unit: fc.constantFrom('\r', '\n', '\0', '\u007f', 'a', ' ', '\t', '\u00e9', '\u2603'), maxLength: 10 }), weight: 1 },
  { arbitrary: fc.integer(), weight: 1 },
  { arbitrary: fc.double(), weight: 1 },
  // Not values: numbers that are not finite, and what is not a string or a number.
  { arbitrary: fc.constantFrom<unknown>(NaN, Infinity, -Infinity, null, true, {}), weight: 1 }
)
const headers = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 2 },
  { arbitrary: fc.array(fc.tuple(headerName, headerValue), { maxLength: 3 }), weight: 3 },
  { arbitrary: fc.dictionary(headerName, fc.oneof(headerValue, fc.array(headerValue, { maxLength: 3 })), { maxKeys: 3 }), weight: 3 },
  {
    // Not headers at all: a string, a pair of one, a pair of three.
    arbitrary: fc.constantFrom<unknown>('X-A: 1', [['X-A']], [['X-A', '1', '2']], [['X-A', '1'], ['X-B']]),
    weight: 1
  }
)
const status = fc.oneof(
  { arbitrary: fc.integer({ min: 200, max: 599 }), weight: 4 },
  { arbitrary: fc.integer({ min: -1000, max: 2000 }), weight: 1 },
  { arbitrary: fc.constantFrom<unknown>(100, 101, 199, 200, 204, 304, 599, 600, NaN, Infinity, 401.5, '401'), weight: 1 }
)
const cyclic: Record<string, unknown> = {}
cyclic.self = cyclic
const body = fc.oneof(
  fc.constant(undefined),
  fc.string({ maxLength: 100 }),
  fc.uint8Array({ maxLength: 100 }),
  fc.object({ maxDepth: 2 }),
  fc.array(fc.string({ maxLength: 10 }), { maxLength: 4 }),
  fc.array(fc.string({ maxLength: 10 }), { maxLength: 4 }).map((chunks) => new StreamBody(chunks)),
  // Not bodies: a number, a boolean, class instances, JSON that cannot be written.
  fc.integer(),
  fc.constantFrom<unknown>(true, new Map([['a', 1]]), new Date(0), cyclic, { n: 1n }, { toJSON: () => undefined })
)
const reason = fc.option(fc.oneof(
  { arbitrary: fc.string({ maxLength: 40 }), weight: 5 },
  { arbitrary: fc.integer(), weight: 1 }
), { nil: undefined })

// ---------------------------------------------------------------------------

t.test(`reject() with random statuses, reasons, headers and bodies (${RUNS} runs)`, async (t) => {
  const decisions = new Map<string, () => HandshakeDecision>()
  const { port, logs } = await start(t, (app) => {
    app.get('/p', { websocket: true, handshake: (request) => (decisions.get(request.headers['x-case'] as string) as () => HandshakeDecision)() }, () => {})
    app.get('/ok', { websocket: true, handshake: () => accept() }, () => {})
  })
  let id = 0
  const outcomes = new Map<string, number>()
  let invalidCount = 0
  await fc.assert(fc.asyncProperty(status, reason, headers, body, async (code, why, given, payload) => {
    const expected = judgeReject(code, why, given, payload)
    const key = String(++id)
    decisions.set(key, () => reject(code as number, why as string | undefined, {
      headers: given as never,
      body: payload instanceof StreamBody ? Readable.from(payload.chunks) : payload as never
    }))
    const before = logs.length
    const seen = await exchange(port, key)
    decisions.delete(key)
    check(expected, seen, logs.slice(before))
    tally(outcomes, expected.code ?? `valid (${expected.kind as string})`)
    if (expected.code !== undefined) invalidCount++
  }), { numRuns: RUNS })
  t.comment(`${RUNS} random denials, as the oracle judged them (each answered as it said): ${summary(outcomes)}`)
  t.ok(invalidCount > 0 && invalidCount < RUNS, 'both valid and invalid decisions were generated')
  t.equal(logs.filter((line) => line.level >= 50).length, invalidCount, 'one error line per invalid decision, none later')
  t.equal(logs.filter((line) => line.level === 40).length, 0, 'no warnings')
  const ok = opened(await connectWs(port, '/ok'))
  t.equal(ok.protocol, '', 'the server is still serving')
  ok.ws.close()
})

t.test(`accept() with random subprotocols and headers (${RUNS} runs)`, async (t) => {
  const decisions = new Map<string, () => HandshakeDecision>()
  const { port, logs } = await start(t, (app) => {
    app.get('/p', { websocket: true, handshake: (request) => (decisions.get(request.headers['x-case'] as string) as () => HandshakeDecision)() }, () => {})
    app.get('/ok', { websocket: true, handshake: () => accept() }, () => {})
  })
  let id = 0
  const outcomes = new Map<string, number>()
  let invalidCount = 0
  const offered = fc.array(fc.string({ unit: tchar, minLength: 1, maxLength: 8 }), { maxLength: 3 }).map((list) => [...new Set(list)])
  const other = fc.option(fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), { nil: undefined, freq: 2 })
  await fc.assert(fc.asyncProperty(offered, other, fc.nat(), fc.boolean(), headers, async (protocols, otherProtocol, index, pickOffered, given) => {
    const protocol = pickOffered && protocols.length > 0 ? protocols[index % protocols.length] : otherProtocol
    const expected = judgeAccept(protocol, given, protocols)
    const key = String(++id)
    decisions.set(key, () => accept({ protocol: protocol as string | undefined, headers: given as never }))
    const before = logs.length
    const seen = await exchange(port, key, protocols.length > 0 ? protocols.join(', ') : undefined)
    decisions.delete(key)
    check(expected, seen, logs.slice(before))
    tally(outcomes, expected.code ?? `valid (${expected.kind as string})`)
    if (expected.code !== undefined) invalidCount++
  }), { numRuns: RUNS })
  t.comment(`${RUNS} random accepts, as the oracle judged them (each answered as it said): ${summary(outcomes)}`)
  t.ok(invalidCount > 0 && invalidCount < RUNS, 'both valid and invalid accepts were generated')
  t.equal(logs.filter((line) => line.level >= 50).length, invalidCount, 'one error line per invalid decision, none later')
  t.equal(logs.filter((line) => line.level === 40).length, 0, 'no warnings')
  const ok = opened(await connectWs(port, '/ok'))
  t.equal(ok.protocol, '', 'the server is still serving')
  ok.ws.close()
})
