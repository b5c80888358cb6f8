// The checks on an extended CONNECT (RFC 8441 §4, RFC 9113 §8.5), made before
// any application code sees it: what is malformed gets its status here (the
// same statuses as over HTTP/1.1 where a check applies), the rest the
// subprotocols it offers. There is no key, no Upgrade and no Connection
// header over HTTP/2: the stream is the connection.
import type { IncomingHttpHeaders } from 'node:http2'
import { FST_WS_GATE_METHOD_NOT_ALLOWED } from '../errors.js'
import { badRequest, checkWebSocketFields, type RequestProblem } from '../core/headers.js'

/**
 * The subprotocols offered, or the reason the request cannot be a WebSocket
 * handshake. Node's HTTP/2 layer (nghttp2) has already reset any CONNECT
 * without :authority, and any extended CONNECT without :path, with
 * PROTOCOL_ERROR.
 */
export function checkConnect (headers: IncomingHttpHeaders): string[] | RequestProblem {
  const protocol = headers[':protocol']
  // A plain CONNECT asks for a tunnel, which no route serves (Node answers it
  // 405 when nobody listens for 'connect').
  if (protocol === undefined) {
    return { error: new FST_WS_GATE_METHOD_NOT_ALLOWED('CONNECT without :protocol'), headers: [['Allow', 'GET']] }
  }
  if (protocol !== 'websocket' && protocol.toLowerCase() !== 'websocket') {
    return badRequest(`Unsupported :protocol ${JSON.stringify(protocol)}: expected "websocket"`)
  }
  const scheme = headers[':scheme']
  if (scheme !== 'https' && scheme !== 'http') {
    return badRequest('An extended CONNECT needs :scheme "https" or "http"')
  }
  return checkWebSocketFields(headers['sec-websocket-version'], headers['sec-websocket-protocol'])
}
