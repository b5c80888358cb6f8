// What an application may put in an answer: statuses, header names and
// values, checked against RFC 9110 before anything can reach a wire; and the
// WebSocket headers every wire reads the same way (Sec-WebSocket-Protocol).
// Protocol-free: no wire, no Fastify.
import {
  FST_WS_GATE_BAD_REQUEST,
  FST_WS_GATE_FORBIDDEN_HEADER,
  FST_WS_GATE_INVALID_HEADER,
  FST_WS_GATE_INVALID_STATUS,
  FST_WS_GATE_UNSUPPORTED_VERSION
} from '../errors.js'
import { statusText } from './status.js'

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
// wire writes them itself, so an application may not.
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
  if (Symbol.iterator in input) {
    for (const entry of input as Iterable<unknown>) {
      if (!Array.isArray(entry) || entry.length !== 2) {
        throw new FST_WS_GATE_INVALID_HEADER(String(entry), 'each header must be a [name, value] pair')
      }
      addHeader(pairs, entry[0], entry[1], rules)
    }
    return pairs
  }
  // An object's own enumerable keys, as Object.entries() gives them, without
  // the array of pairs it would make on every decision.
  for (const name in input) {
    if (Object.prototype.hasOwnProperty.call(input, name)) addHeader(pairs, name, (input as Record<string, unknown>)[name], rules)
  }
  return pairs
}

function addHeader (pairs: HeaderPairs, name: unknown, value: unknown, rules: HeaderRules): void {
  // The name is checked even for an empty list of values, as Node's setHeader() does.
  checkName(name, rules)
  if (Array.isArray(value)) {
    for (const item of value) pairs.push([name, checkValue(name, item, rules)])
  } else {
    pairs.push([name, checkValue(name, value, rules)])
  }
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

export const JSON_TYPE = 'application/json; charset=utf-8'

/** On every 503 the gate answers itself (timeout, shutdown, load shedding): seconds to wait. Never mutated. */
export const RETRY_LATER: HeaderPairs = [['Retry-After', '5']]

/** Fastify's error shape, so that a denial reads like any other Fastify error. */
export function errorBody (status: number, message: string, code?: string): Buffer {
  const error = statusText(status) ?? 'Error'
  return Buffer.from(JSON.stringify(code === undefined
    ? { statusCode: status, error, message }
    : { statusCode: status, code, error, message }))
}

/** Caps on the answers the gate sends itself. */
export interface DenialLimits {
  /** Bytes a denial body may have (a stream is cut off past it). */
  maxBodySize: number
  /** Milliseconds an answer may take to go out, stream and flush included; then the connection is cut. */
  timeout: number
}

// The common case, shared: no subprotocols offered.
const NONE: string[] = Object.freeze([]) as unknown as string[]
// Past this many tokens, duplicates are found with a set.
const SHORT_LIST = 8

/**
 * The subprotocols in a Sec-WebSocket-Protocol value (`1#token`), in the
 * client's order; null when the value is malformed: an empty element, a
 * character outside a token, or the same protocol twice. Linear in the
 * value's length: a short list (the usual one or two) is searched in place,
 * a longer one through a set, so that a hostile header with thousands of
 * tokens costs no more than its length.
 */
export function parseProtocols (value: string | undefined): string[] | null {
  if (value === undefined) return NONE
  const parts = value.split(',')
  const seen = parts.length > SHORT_LIST ? new Set<string>() : undefined
  const protocols: string[] = []
  for (const part of parts) {
    const protocol = trimOWS(part)
    if (!isToken(protocol)) return null
    if (seen === undefined) {
      if (protocols.includes(protocol)) return null
    } else {
      if (seen.has(protocol)) return null
      seen.add(protocol)
    }
    protocols.push(protocol)
  }
  return protocols
}

/** Why a request cannot be a WebSocket handshake (a wire's checks): the error, with its status, and headers for the answer. */
export interface RequestProblem {
  error: Error & { statusCode: number, code: string }
  headers: HeaderPairs
}

/**
 * The checks a WebSocket handshake request has over either protocol (RFC 6455
 * §4.2.1, RFC 8441 §5): version 13, and a well-formed subprotocol list, which
 * it returns.
 */
export function checkWebSocketFields (version: string | undefined, protocols: string | undefined): string[] | RequestProblem {
  if (version === undefined || trimOWS(version) !== '13') {
    return {
      error: new FST_WS_GATE_UNSUPPORTED_VERSION(version === undefined ? '(none)' : JSON.stringify(version)),
      headers: [['Sec-WebSocket-Version', '13']]
    }
  }
  return parseProtocols(protocols) ?? badRequest('Invalid Sec-WebSocket-Protocol header')
}

/** A request a wire's checks refuse with 400. */
export function badRequest (message: string): RequestProblem {
  return { error: new FST_WS_GATE_BAD_REQUEST(message), headers: [] }
}
