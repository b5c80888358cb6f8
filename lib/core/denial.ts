// What a reject() becomes: a validated denial (status, headers, a body and
// how it is framed), ready for any wire to send. Nothing here writes.
import { Readable } from 'node:stream'
import { FST_WS_GATE_INVALID_BODY } from '../errors.js'
import { isAccept, isDecision, type RejectDecision } from './decision.js'
import { allowsBody, checkStatus, errorBody, hasHeader, JSON_TYPE, toHeaderPairs, type DenialLimits, type HeaderPairs } from './headers.js'

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

/** Validates a reject() and settles its body; throws a coded error when it cannot be sent. */
export function prepareDenial (decision: RejectDecision, limits: DenialLimits): Denial {
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

/**
 * Checks a denial a face framed itself (asgi()'s websocket.http.response.start):
 * a length it declared is a promise about bytes not sent yet, and one above
 * the limit would go out in the head and then be cut off.
 */
export function checkDenial (denial: Denial, limits: DenialLimits): void {
  const { length } = denial
  if (length !== undefined && length > limits.maxBodySize && allowsBody(denial.status)) {
    throw new FST_WS_GATE_INVALID_BODY(`its Content-Length of ${length} is more than the ${limits.maxBodySize} bytes the denial body limit allows`)
  }
}

/** The gate's own error answers (malformed requests, shedding, timeouts, bugs): Fastify's error shape. */
export function errorDenial (err: { statusCode: number, code?: string, message: string }, extra: HeaderPairs = []): Denial {
  return { status: err.statusCode, headers: [['Content-Type', JSON_TYPE], ...extra], body: errorBody(err.statusCode, err.message, err.code) }
}

/**
 * A stream body: a node:stream Readable, or any stream with the classic
 * interface (readable-stream, through2, old Stream instances).
 */
export function isStream (value: unknown): value is NodeJS.ReadableStream & { destroy?: () => void } {
  return typeof value === 'object' && value !== null &&
    typeof (value as NodeJS.ReadableStream).pipe === 'function' && typeof (value as NodeJS.ReadableStream).on === 'function'
}

// A stream body that will never be sent is destroyed, so that its source (a
// file, a database cursor) is released.
export function discardBody (decision: unknown): void {
  if (isDecision(decision) && !isAccept(decision) && isStream(decision.body)) decision.body.destroy?.()
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
