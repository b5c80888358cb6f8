// Malformed upgrade requests as raw bytes: random mutations of a valid
// request. The server always answers with a well-formed 101 (the mutation
// left a valid request), a well-formed 4xx, or closes; never a 5xx, never a
// malformed response, and it keeps serving.
import { once } from 'node:events'
import { connect } from 'node:net'
import fc from 'fast-check'
import t from 'tap'
import { accept } from '../lib/index.js'
import { connectWs, opened, start, upgradeRequest } from './helpers.js'

const RUNS = 300
const VALID = Buffer.from(upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': 'chat' }))
const LINES = VALID.toString('latin1').split('\r\n')

// Sends the bytes, then ends our side; resolves with everything the server
// sent before closing (bounded: 3 s).
async function send (port: number, bytes: Buffer): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const finish = (): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(Buffer.concat(chunks).toString('latin1'))
    }
    const timer = setTimeout(finish, 3000)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('close', finish)
    socket.on('error', () => {})
    socket.write(bytes)
    setTimeout(() => socket.end(), 100)
  })
}

// A response head as RFC 9112 has it, and a body that matches its length.
function wellFormed (text: string): { ok: boolean, status: number } {
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) return { ok: false, status: 0 }
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n')
  const match = /^HTTP\/1\.1 (\d{3}) [^\r\n]*$/.exec(statusLine)
  if (match === null) return { ok: false, status: 0 }
  const status = Number(match[1])
  let length: number | undefined
  for (const line of lines) {
    const header = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?([\t\x20-\x7e\x80-\xff]*)$/.exec(line)
    if (header === null) return { ok: false, status }
    if (header[1].toLowerCase() === 'content-length') length = Number(header[2])
  }
  if (status !== 101 && length !== undefined && text.length - end - 4 !== length) return { ok: false, status }
  return { ok: true, status }
}

const mutation = fc.oneof(
  fc.integer({ min: 0, max: VALID.length - 1 }).map((at) => ({ kind: 'truncate', bytes: VALID.subarray(0, at) })),
  fc.array(fc.tuple(fc.integer({ min: 0, max: VALID.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }).map((flips) => {
    const bytes = Buffer.from(VALID)
    for (const [at, value] of flips) bytes[at] = value
    return { kind: 'flip', bytes }
  }),
  fc.tuple(fc.integer({ min: 0, max: VALID.length }), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([at, insert]) => ({
    kind: 'insert', bytes: Buffer.concat([VALID.subarray(0, at), Buffer.from(insert), VALID.subarray(at)])
  })),
  fc.integer({ min: 1, max: LINES.length - 3 }).map((line) => ({
    kind: 'duplicate header', bytes: Buffer.from([...LINES.slice(0, line + 1), LINES[line], ...LINES.slice(line + 1)].join('\r\n'), 'latin1')
  })),
  fc.integer({ min: 1, max: LINES.length - 3 }).map((line) => ({
    kind: 'drop header', bytes: Buffer.from([...LINES.slice(0, line), ...LINES.slice(line + 1)].join('\r\n'), 'latin1')
  })),
  fc.integer({ min: 8 * 1024, max: 96 * 1024 }).map((size) => ({
    kind: 'oversized header', bytes: Buffer.from(upgradeRequest('/ws', { 'X-Big': 'a'.repeat(size) }))
  })),
  fc.constantFrom(
    { kind: 'HTTP/1.0', bytes: Buffer.from(upgradeRequest('/ws', {}, 'GET /ws HTTP/1.0')) },
    { kind: 'absolute-form', bytes: Buffer.from(upgradeRequest('/ws', {}, 'GET http://127.0.0.1/ws HTTP/1.1')) },
    { kind: 'invalid UTF-8', bytes: Buffer.concat([Buffer.from('GET /ws\xff\xfe HTTP/1.1\r\n', 'latin1'), VALID.subarray(VALID.indexOf('\r\n') + 2)]) },
    { kind: 'pipelined', bytes: Buffer.concat([VALID, Buffer.from('GET /ws HTTP/1.1\r\nHost: x\r\n\r\n')]) },
    { kind: 'pipelined garbage', bytes: Buffer.concat([VALID, Buffer.from([0xff, 0x00, 0x81, 0x80, 1, 2, 3, 4])]) }
  )
)

t.test(`random mutations of a valid upgrade request (${RUNS} runs)`, async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: (_r, { protocols }) => accept({ protocol: protocols[0] }) }, () => {})
  })
  const kinds = new Map<string, number>()
  const statuses = new Map<number, number>()
  let run = 0
  await fc.assert(fc.asyncProperty(mutation, async ({ kind, bytes }) => {
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
    const text = await send(port, bytes)
    run++
    if (run % 50 === 0) opened(await connectWs(port, '/ws', { protocols: ['chat'] })).ws.close()
    if (text === '') {
      statuses.set(0, (statuses.get(0) ?? 0) + 1)
      return true
    }
    const { ok, status } = wellFormed(text)
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
    return ok && (status === 101 || (status >= 400 && status < 500))
  }), { numRuns: RUNS })
  t.comment(`${RUNS} mutated requests: ${[...kinds].map(([kind, n]) => `${kind}×${n}`).join(', ')}`)
  t.comment(`answers: ${[...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s === 0 ? 'closed' : s}×${n}`).join(' ')}`)
  const ok = opened(await connectWs(port, '/ws', { protocols: ['chat'] }))
  t.equal(ok.protocol, 'chat', 'the server still serves valid handshakes')
  ok.ws.close()
})
