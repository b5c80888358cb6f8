// Turns a reject() into bytes: picks the body and its framing (Content-Length
// for text, bytes and JSON; chunked for a stream) and streams with backpressure.
import { Readable, type Duplex } from 'node:stream'
import { FST_WS_GATE_BODY_STREAM_ERROR, FST_WS_GATE_INVALID_BODY } from '../errors.js'
import { kDecision, type RejectDecision } from './decision.js'
import {
  allowsBody, checkStatus, closeAfter, DEFAULT_LIMITS, errorBody, guard, hasHeader, JSON_TYPE, latin1,
  responseHead, sendResponse, toHeaderPairs, type DenialLimits, type HeaderPairs
} from './http.js'
import type { HandshakeLogger } from './handshake.js'

export interface Denial {
  status: number
  headers: HeaderPairs
  body: Buffer | Readable | null
  /**
   * For a stream body whose length the application declared in its own
   * Content-Length header (ASGI allows it): sent as is, not chunked, and
   * checked against that length.
   */
  length?: number
}

// A denial that a face has validated and framed itself (asgi()'s
// websocket.http.response.start, whose headers may declare the body's length),
// handed to the engine as a reject(): the engine's limits are checked here, as
// for every reject(), before anything goes out.
const kPrepared = Symbol('fastify-ws-gate.prepared-denial')

interface PreparedDecision extends RejectDecision {
  readonly [kPrepared]: Denial
}

/** A reject() carrying a denial its face has already validated, for Handshake.applyOrThrow(). */
export function preparedDecision (denial: Denial): RejectDecision {
  const decision: PreparedDecision = { [kDecision]: 'reject', status: denial.status, [kPrepared]: denial }
  return decision
}

/** Validates a reject() and settles its body; throws a coded error when it cannot be sent. */
export function prepareDenial (decision: RejectDecision, limits: DenialLimits = DEFAULT_LIMITS): Denial {
  const prepared = (decision as Partial<PreparedDecision>)[kPrepared]
  if (prepared !== undefined) return checkDeclaredLength(prepared, limits)
  const status = checkStatus(decision.status)
  const headers = toHeaderPairs(decision.headers)
  const { reason, body } = decision
  if (reason !== undefined && typeof reason !== 'string') {
    throw new FST_WS_GATE_INVALID_BODY(`the reason must be a string, got ${typeof reason}`)
  }
  if (!allowsBody(status)) {
    if (isStream(body)) body.destroy?.()
    return { status, headers, body: null }
  }
  let bytes: Buffer | Readable | null
  let type: string
  if (body === undefined || body === null) {
    if (reason === undefined) return { status, headers, body: null }
    bytes = errorBody(status, reason)
    type = JSON_TYPE
  } else if (typeof body === 'string') {
    bytes = Buffer.from(body)
    type = 'text/plain; charset=utf-8'
  } else if (body instanceof Uint8Array) {
    bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength)
    type = 'application/octet-stream'
  } else if (isStream(body)) {
    bytes = body instanceof Readable ? body : new Readable({ objectMode: true }).wrap(body)
    type = 'application/octet-stream'
  } else if (typeof body === 'object' && (Array.isArray(body) || isPlainObject(body))) {
    bytes = Buffer.from(toJSON(body))
    type = JSON_TYPE
  } else {
    throw new FST_WS_GATE_INVALID_BODY(`expected a string, bytes, a plain object or a readable stream, got ${describe(body)}`)
  }
  if (bytes instanceof Buffer && bytes.length > limits.maxBodySize) {
    throw new FST_WS_GATE_INVALID_BODY(`it has ${bytes.length} bytes, more than the ${limits.maxBodySize} the denial body limit allows`)
  }
  if (!hasHeader(headers, 'content-type')) headers.push(['Content-Type', type])
  return { status, headers, body: bytes }
}

// A length the application declared is a promise about bytes it has not sent
// yet: one above the limit would go out in the head and then be cut off.
function checkDeclaredLength (denial: Denial, limits: DenialLimits): Denial {
  const { length } = denial
  if (length !== undefined && length > limits.maxBodySize && allowsBody(denial.status)) {
    throw new FST_WS_GATE_INVALID_BODY(`its Content-Length of ${length} is more than the ${limits.maxBodySize} bytes the denial body limit allows`)
  }
  return denial
}

/**
 * A stream body: a node:stream Readable, or any stream with the classic
 * interface (readable-stream, through2, old Stream instances).
 */
export function isStream (value: unknown): value is NodeJS.ReadableStream & { destroy?: () => void } {
  return typeof value === 'object' && value !== null &&
    typeof (value as NodeJS.ReadableStream).pipe === 'function' && typeof (value as NodeJS.ReadableStream).on === 'function'
}

function isPlainObject (value: object): boolean {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function toJSON (value: unknown): string {
  let json: string | undefined
  try {
    json = JSON.stringify(value)
  } catch (err) {
    throw new FST_WS_GATE_INVALID_BODY(`it cannot be serialised as JSON (${(err as Error).message})`)
  }
  // A toJSON() that returns undefined (or a function, or a symbol) serialises
  // to nothing at all: there is no body to send, and no JSON to say so.
  if (json === undefined) throw new FST_WS_GATE_INVALID_BODY('it serialises to nothing as JSON (its toJSON() returned undefined, a function or a symbol)')
  return json
}

export function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'a null-prototype object'}`
  return typeof value
}

/** Writes a prepared denial and closes the connection after it. */
export function writeDenial (socket: Duplex, denial: Denial, log: HandshakeLogger, limits: DenialLimits = DEFAULT_LIMITS): void {
  const { status, headers, body } = denial
  if (body instanceof Readable) {
    guard(socket, limits.timeout)
    streamDenial(socket, status, headers, body, denial.length, limits.maxBodySize, log)
  } else {
    sendResponse(socket, status, headers, body, limits)
  }
}

// Chunked transfer coding (RFC 9112 §7.1), one chunk per stream chunk, waiting
// for the socket to drain so that a slow client cannot make us buffer the body.
// With a declared length, the bytes go out as they are, and must add up.
function streamDenial (
  socket: Duplex, status: number, headers: HeaderPairs, body: Readable, length: number | undefined, maxBodySize: number, log: HandshakeLogger
): void {
  // As while the decision was pending, a client that ends its side has left:
  // no WebSocket client half-closes to wait for a response.
  const onClose = (): void => {
    socket.destroy()
    body.destroy()
  }
  socket.on('end', onClose)
  socket.on('close', onClose)
  socket.on('error', onClose)
  socket.resume()
  const chunked = length === undefined
  socket.write(latin1(responseHead(status, headers, chunked ? 'Transfer-Encoding: chunked\r\n' : null)))
  pump(socket, body, length, maxBodySize).then(() => {
    socket.removeListener('end', onClose)
    socket.removeListener('close', onClose)
    closeAfter(socket, chunked ? LAST_CHUNK : undefined)
  }, (err: Error) => {
    body.destroy()
    if (socket.destroyed) {
      log.debug({ statusCode: status }, 'client closed the connection during the denial body')
      return
    }
    // The status line is gone; all that is left is to cut the response short,
    // which the client sees as an incomplete body.
    socket.destroy()
    log.error({ err: new FST_WS_GATE_BODY_STREAM_ERROR(err.message) }, 'denial body stream failed')
  })
}

const CRLF = Buffer.from('\r\n')
const LAST_CHUNK = Buffer.from('0\r\n\r\n')

// When the client leaves, onClose destroys the body, which ends this loop
// with an error; so the loop itself never needs to look at the socket.
async function pump (socket: Duplex, body: Readable, length: number | undefined, maxBodySize: number): Promise<void> {
  let sent = 0
  for await (const chunk of body) {
    const bytes: unknown = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`a stream chunk must be a string or bytes, got ${describe(bytes)}`)
    if (bytes.length === 0) continue
    sent += bytes.length
    if (sent > maxBodySize) throw new RangeError(`the body is longer than the ${maxBodySize} bytes the denial body limit allows`)
    let flushed: boolean
    if (length === undefined) {
      socket.write(latin1(`${bytes.length.toString(16)}\r\n`))
      socket.write(bytes)
      flushed = socket.write(CRLF)
    } else {
      if (sent > length) throw new RangeError(`the body is longer than its Content-Length of ${length}`)
      flushed = socket.write(bytes)
    }
    if (!flushed) await drained(socket)
  }
  if (length !== undefined && sent < length) throw new RangeError(`the body ended ${length - sent} bytes short of its Content-Length of ${length}`)
}

function drained (socket: Duplex): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.removeListener('drain', done)
      socket.removeListener('close', done)
      resolve()
    }
    socket.on('drain', done)
    socket.on('close', done)
  })
}
