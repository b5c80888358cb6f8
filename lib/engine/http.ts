// The HTTP side of a failed handshake: validating what an application wants to
// put on the wire, and writing complete, correctly framed responses straight to
// the socket. Nothing here knows about Fastify.
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import {
  FST_WS_GATE_FORBIDDEN_HEADER,
  FST_WS_GATE_INVALID_HEADER,
  FST_WS_GATE_INVALID_STATUS
} from '../errors.js'

/** A header list as it goes on the wire: ordered, duplicates kept. */
export type HeaderPairs = Array<[name: string, value: string]>

/** Headers as an application may give them. */
export type HeadersInput =
  | Record<string, string | number | ReadonlyArray<string | number>>
  | Iterable<readonly [string, string | number]>

// RFC 9110 §5.6.2: token = 1*tchar
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
// RFC 9110 §5.5 field-value, as Node's own http module enforces it: visible
// ASCII, obs-text, space and tab. Anything else (CR, LF, NUL, other controls,
// characters above U+00FF) would corrupt the response or be silently mangled.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
const ASCII_VALUE = /^[\t\x20-\x7e]*$/

/** Optional whitespace (RFC 9110 §5.6.3) is space and tab only; String.prototype.trim() strips far more. */
export function trimOWS (value: string): string {
  // Node's parser has trimmed most values already: look before replacing.
  if (value.length === 0 || (!isOWS(value.charCodeAt(0)) && !isOWS(value.charCodeAt(value.length - 1)))) return value
  return value.replace(/^[ \t]+|[ \t]+$/g, '')
}

const isOWS = (code: number): boolean => code === 0x20 || code === 0x09

// Headers that frame the response or belong to the WebSocket handshake: the
// engine writes them itself, so an application may not.
const RESERVED = new Set(['upgrade', 'connection', 'content-length', 'transfer-encoding'])

/** A reason phrase that can stand in a status line: no CR, LF or other controls. */
export function isStatusMessage (value: string): boolean {
  return FIELD_VALUE.test(value)
}

export function isToken (value: string): boolean {
  return TOKEN.test(value)
}

export interface HeaderRules {
  /** Let Content-Length through, for a body framed by the application's own declared length (ASGI). */
  allowLength?: boolean
  /** Only ASCII values: for the 101, which ws writes as UTF-8, where obs-text would change bytes. */
  asciiOnly?: boolean
}

const NO_RULES: HeaderRules = {}

/** Validates and flattens application headers; throws a coded error on the first bad one. */
export function toHeaderPairs (input: HeadersInput | undefined, rules: HeaderRules = NO_RULES): HeaderPairs {
  // A fresh list each time: callers add framing headers to it.
  const pairs: HeaderPairs = []
  if (input === undefined || input === null) return pairs
  if (typeof input !== 'object') {
    throw new FST_WS_GATE_INVALID_HEADER(String(input), 'headers must be an object or a list of [name, value] pairs')
  }
  const entries = Symbol.iterator in input
    ? input as Iterable<readonly [string, unknown]>
    : Object.entries(input)
  for (const entry of entries) {
    if (!Array.isArray(entry) || entry.length !== 2) {
      throw new FST_WS_GATE_INVALID_HEADER(String(entry), 'each header must be a [name, value] pair')
    }
    const [name, value] = entry
    // The name is checked even for an empty list of values, as Node's setHeader() does.
    checkName(name, rules)
    if (Array.isArray(value)) {
      for (const item of value) pairs.push([name, checkValue(name, item, rules)])
    } else {
      pairs.push([name, checkValue(name, value, rules)])
    }
  }
  return pairs
}

function checkName (name: unknown, rules: HeaderRules): asserts name is string {
  if (typeof name !== 'string' || !TOKEN.test(name)) {
    throw new FST_WS_GATE_INVALID_HEADER(JSON.stringify(String(name)), 'the name is not an RFC 9110 token')
  }
  const lower = name.toLowerCase()
  if ((RESERVED.has(lower) && !(rules.allowLength === true && lower === 'content-length')) || lower.startsWith('sec-websocket-')) {
    throw new FST_WS_GATE_FORBIDDEN_HEADER(name)
  }
}

function checkValue (name: string, value: unknown, rules: HeaderRules): string {
  if (typeof value === 'number' && Number.isFinite(value)) value = String(value)
  if (typeof value !== 'string') {
    throw new FST_WS_GATE_INVALID_HEADER(name, `the value must be a string or a finite number, got ${typeof value}`)
  }
  if (!FIELD_VALUE.test(value)) {
    throw new FST_WS_GATE_INVALID_HEADER(name, 'the value contains CR, LF, NUL, another control character or a character above U+00FF')
  }
  if (rules.asciiOnly === true) requireAscii(name, value)
  return value
}

/** Throws unless a header value can go into a 101, which ws writes as UTF-8 (obs-text bytes would change). */
export function requireAscii (name: string, value: string): void {
  if (!ASCII_VALUE.test(value)) {
    throw new FST_WS_GATE_INVALID_HEADER(name, 'a 101 header value must be ASCII (ws writes the 101 as UTF-8, which would change obs-text bytes)')
  }
}

/** Throws unless `status` may end a failed handshake: an integer from 200 to 599. */
export function checkStatus (status: unknown): number {
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599) {
    throw new FST_WS_GATE_INVALID_STATUS(typeof status === 'string' ? JSON.stringify(status) : String(status))
  }
  return status
}

/** RFC 9110 §6.4.1: these statuses never carry content. */
export function allowsBody (status: number): boolean {
  return status !== 204 && status !== 304
}

export function hasHeader (headers: HeaderPairs, lowerName: string): boolean {
  for (const [name] of headers) if (name.toLowerCase() === lowerName) return true
  return false
}

// RFC 9110 §6.6.1: an origin server with a clock sends Date on 2xx-4xx. The
// string changes once a second, so it is built once a second.
let dateCache = ''
let dateSecond = -1
function httpDate (): string {
  const now = Date.now()
  const second = Math.floor(now / 1000)
  if (second !== dateSecond) {
    dateSecond = second
    dateCache = new Date(now).toUTCString()
  }
  return dateCache
}

/** Status line and header block, framing headers included, ending in the blank line. */
export function responseHead (status: number, headers: HeaderPairs, framing: string | null): string {
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`
  if (framing !== null) head += framing
  if (!hasHeader(headers, 'date')) head += `Date: ${httpDate()}\r\n`
  return head + 'Connection: close\r\n\r\n'
}

/** Caps on the responses the engine writes itself. */
export interface DenialLimits {
  /** Bytes a denial body may have (a stream is cut off past it). */
  maxBodySize: number
  /** Milliseconds a response may take to go out, stream and flush included; then the socket is destroyed. */
  timeout: number
}

export const DEFAULT_LIMITS: DenialLimits = { maxBodySize: 64 * 1024, timeout: 10_000 }

/**
 * Destroys the socket if it is still open `ms` from now: a client that stops
 * reading (or a body source that stalls) cannot hold a connection forever.
 */
export function guard (socket: Duplex, ms: number): void {
  if (ms === 0) return
  const timer = setTimeout(() => socket.destroy(), ms)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
}

/**
 * Ends the connection once everything written so far has been flushed. Reading
 * goes on meanwhile, so that unread bytes from the client cannot turn our close
 * into a reset that would destroy the response before the client reads it.
 * With `timeout`, the socket is destroyed if that takes longer.
 */
export function closeAfter (socket: Duplex, last?: Buffer, timeout?: number): void {
  if (timeout !== undefined) guard(socket, timeout)
  socket.on('error', destroySelf)
  socket.resume()
  socket.once('finish', destroySelf)
  socket.end(last)
}

function destroySelf (this: Duplex): void {
  this.destroy()
}

// Header values may hold obs-text (U+0080-U+00FF): one byte each on the wire.
export function latin1 (text: string): Buffer {
  return Buffer.from(text, 'latin1')
}

/** Writes a complete response with a fixed body, then closes the connection. */
export function sendResponse (socket: Duplex, status: number, headers: HeaderPairs, body: Buffer | null, limits = DEFAULT_LIMITS): void {
  if (!allowsBody(status)) {
    closeAfter(socket, latin1(responseHead(status, headers, null)), limits.timeout)
    return
  }
  const length = body === null ? 0 : body.length
  const head = responseHead(status, headers, `Content-Length: ${length}\r\n`)
  // One buffer, one write: the head (one byte per character) and the body.
  const bytes = Buffer.allocUnsafe(head.length + length)
  bytes.write(head, 0, 'latin1')
  if (body !== null) body.copy(bytes, head.length)
  closeAfter(socket, bytes, limits.timeout)
}

export const JSON_TYPE = 'application/json; charset=utf-8'

/** On every 503 the gate writes itself (timeout, shutdown, load shedding): seconds to wait. Never mutated. */
export const RETRY_LATER: HeaderPairs = [['Retry-After', '5']]

/** Fastify's error shape, so that a denial reads like any other Fastify error. */
export function errorBody (status: number, message: string, code?: string): Buffer {
  const error = STATUS_CODES[status] ?? 'Error'
  return Buffer.from(JSON.stringify(code === undefined
    ? { statusCode: status, error, message }
    : { statusCode: status, code, error, message }))
}

/** An error response produced by the gate itself (malformed request, timeout, bug). */
export function sendError (
  socket: Duplex, err: { statusCode: number, code?: string, message: string }, extra: HeaderPairs = [], limits = DEFAULT_LIMITS
): void {
  sendResponse(socket, err.statusCode, [['Content-Type', JSON_TYPE], ...extra], errorBody(err.statusCode, err.message, err.code), limits)
}
