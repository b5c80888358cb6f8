// What the e2e app (app.ts) puts on the wire, byte for byte (Date masked),
// for a request with the sample Sec-WebSocket-Key of RFC 6455 §1.3. Each
// client's test checks what that client makes of these same bytes.
import { ACCEPT } from '../helpers.js'

export interface Expected {
  statusLine: string
  head: string[]
  body: string
}

export const BODY_401 = '{"statusCode":401,"error":"Unauthorized","message":"Invalid token"}'
export const BODY_429 = '{"statusCode":429,"error":"Too Many Requests","message":"Too many connections"}'
export const BODY_503 = '{"statusCode":503,"code":"FST_WS_GATE_HANDSHAKE_TIMEOUT","error":"Service Unavailable","message":"The handshake was not decided within 500 ms"}'

/** /http/rooms/lobby?token=secret, offering chat.v1 and chat.v2. */
export const ACCEPTED: Expected = {
  statusLine: 'HTTP/1.1 101 Switching Protocols',
  head: [
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${ACCEPT}`,
    'Sec-WebSocket-Protocol: chat.v2',
    'Set-Cookie: room=lobby; Path=/; HttpOnly'
  ],
  body: ''
}

/** /http/rooms/lobby?token=wrong */
export const UNAUTHORIZED: Expected = {
  statusLine: 'HTTP/1.1 401 Unauthorized',
  head: [
    'WWW-Authenticate: Bearer realm="e2e"',
    'Set-Cookie: token=; Max-Age=0; Path=/',
    'Content-Type: application/json; charset=utf-8',
    'Content-Length: 67',
    'Date: <date>',
    'Connection: close'
  ],
  body: BODY_401
}

/** /http/rooms/busy?token=secret */
export const TOO_MANY: Expected = {
  statusLine: 'HTTP/1.1 429 Too Many Requests',
  head: [
    'Retry-After: 30',
    'Content-Type: application/json; charset=utf-8',
    'Content-Length: 79',
    'Date: <date>',
    'Connection: close'
  ],
  body: BODY_429
}

/** /{http,close,auto}/rooms/slow?token=secret: the gate's own timeout, HTTP in every mode. */
export const TIMED_OUT: Expected = {
  statusLine: 'HTTP/1.1 503 Service Unavailable',
  head: [
    'Content-Type: application/json; charset=utf-8',
    'Retry-After: 5',
    'Content-Length: 143',
    'Date: <date>',
    'Connection: close'
  ],
  body: BODY_503
}

/** Any route, with Origin: http://evil.example (refused by allowedOrigins): HTTP 403 in every mode. */
export const ORIGIN_REFUSED: Expected = {
  statusLine: 'HTTP/1.1 403 Forbidden',
  head: [
    'Content-Type: application/json; charset=utf-8',
    'Content-Length: 136',
    'Date: <date>',
    'Connection: close'
  ],
  body: '{"statusCode":403,"code":"FST_WS_GATE_ORIGIN_NOT_ALLOWED","error":"Forbidden","message":"Origin \\"http://evil.example\\" is not allowed"}'
}

/**
 * /close/rooms/lobby?token=wrong, offering chat.v1 and chat.v2: the 101 selects
 * the first offer, keeps Set-Cookie, drops WWW-Authenticate; then close 4401.
 */
export const REFUSED: Expected = {
  statusLine: 'HTTP/1.1 101 Switching Protocols',
  head: [
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${ACCEPT}`,
    'Sec-WebSocket-Protocol: chat.v1',
    'Set-Cookie: token=; Max-Age=0; Path=/'
  ],
  body: ''
}

/** The close frame of REFUSED, as a server sends it (unmasked): FIN + close, length 15, 4401, reason. */
export const REFUSED_FRAME = Buffer.concat([Buffer.from([0x88, 15, 0x11, 0x31]), Buffer.from('Invalid token')])

/** /close/rooms/busy?token=secret, offering nothing: no subprotocol, Retry-After dropped; then close 4429. */
export const REFUSED_BUSY: Expected = {
  statusLine: 'HTTP/1.1 101 Switching Protocols',
  head: [
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${ACCEPT}`
  ],
  body: ''
}

/** A server text frame (unmasked, under 126 bytes). */
export function textFrame (text: string): Buffer {
  const payload = Buffer.from(text)
  return Buffer.concat([Buffer.from([0x81, payload.length]), payload])
}

/** A raw HTTP response as text: status line, head lines, blank line, body. */
export function asText (expected: Expected): string {
  return `${[expected.statusLine, ...expected.head].join('\r\n')}\r\n\r\n${expected.body}`
}
