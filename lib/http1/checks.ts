// The checks on an HTTP/1.1 upgrade request (RFC 6455 §4.2.1, RFC 9112 §3.2),
// made before any application code sees it: what is malformed gets its
// status here, the rest the subprotocols it offers.
import type { IncomingHttpHeaders } from 'node:http'
import { FST_WS_GATE_METHOD_NOT_ALLOWED } from '../errors.js'
import { badRequest, checkWebSocketFields, trimOWS, type RequestProblem } from '../core/headers.js'

export interface UpgradeRequest {
  method?: string
  httpVersion: string
  headers: IncomingHttpHeaders
  /** As Node gives them; absent on the request objects @fastify/websocket's injectWS() makes. */
  rawHeaders?: string[]
}

// RFC 6455 §4.1: the key is 16 random bytes, base64-encoded: 22 characters
// of the base64 alphabet, then '=='. Checked by hand, as it is on every
// upgrade: a regular expression costs several times as much.
const BASE64 = new Uint8Array(128)
for (const char of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') BASE64[char.charCodeAt(0)] = 1
const EQUALS = 0x3d

/** Whether a Sec-WebSocket-Key value is 16 bytes in base64. */
function isWebSocketKey (key: string): boolean {
  if (key.length !== 24 || key.charCodeAt(22) !== EQUALS || key.charCodeAt(23) !== EQUALS) return false
  for (let i = 0; i < 22; i++) {
    const code = key.charCodeAt(i)
    if (code >= 128 || BASE64[code] !== 1) return false
  }
  return true
}

// The headers the checks read. Node gives every one as a string; request
// objects made in-process (@fastify/websocket's injectWS() sends the version
// as the number 13) may not.
const CHECKED = ['host', 'upgrade', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol'] as const

/**
 * The subprotocols offered, or the reason the request cannot be a WebSocket
 * handshake. `requireHost`: a request without Host is refused, as Node's
 * `requireHostHeader` does for other requests (a duplicated Host always is).
 */
export function checkUpgrade (req: UpgradeRequest, requireHost: boolean): string[] | RequestProblem {
  if (req.method !== 'GET') {
    return { error: new FST_WS_GATE_METHOD_NOT_ALLOWED(req.method), headers: [['Allow', 'GET']] }
  }
  if (req.httpVersion !== '1.1') {
    return badRequest('A WebSocket upgrade needs HTTP/1.1')
  }
  const { headers } = req
  for (const name of CHECKED) {
    const value: unknown = headers[name]
    if (value === undefined || typeof value === 'string') continue
    // A number becomes the text a client would have sent, so that ws, which
    // reads these headers again, sees it as such.
    if (typeof value !== 'number') return badRequest(`Invalid ${name} header`)
    headers[name] = String(value)
  }
  // RFC 9112 §3.2: exactly one Host.
  if (headers.host === undefined ? requireHost : hostRepeated(req.rawHeaders)) {
    return badRequest('A request needs exactly one Host header')
  }
  if (!isWebSocketUpgrade(headers.upgrade)) {
    return badRequest('Missing or invalid Upgrade header: expected "websocket"')
  }
  const key = headers['sec-websocket-key']
  if (key === undefined || !isWebSocketKey(key)) {
    return badRequest('Missing or invalid Sec-WebSocket-Key header')
  }
  return checkWebSocketFields(headers['sec-websocket-version'], headers['sec-websocket-protocol'])
}

// Node keeps the first of several Host lines in `headers`; the raw list has them all.
function hostRepeated (raw: string[] | undefined): boolean {
  if (raw === undefined) return false
  let seen = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    if (name.length !== 4 || name.toLowerCase() !== 'host') continue
    if (seen) return true
    seen = true
  }
  return false
}

/** Whether an Upgrade header asks for WebSocket. */
export function isWebSocketUpgrade (upgrade: string | undefined): boolean {
  return upgrade !== undefined && (upgrade === 'websocket' || trimOWS(upgrade).toLowerCase() === 'websocket')
}

/** Whether a Connection header lists the `upgrade` option (RFC 9110 §7.6.1). */
export function asksUpgrade (connection: string | undefined): boolean {
  if (connection === undefined) return false
  for (const option of connection.split(',')) if (option.trim().toLowerCase() === 'upgrade') return true
  return false
}
