// Every error fastify-ws-gate can raise, in one place. Each code is listed in
// docs/api.md; the status code is the one a client sees when the error ends a
// handshake (500 for programming errors in a decision).
import createError from '@fastify/error'

// Registration: thrown synchronously, so a bad configuration fails at boot.
export const FST_WS_GATE_INVALID_OPTION = createError(
  'FST_WS_GATE_INVALID_OPTION', 'Invalid fastify-ws-gate option %s: %s', 500, TypeError)
export const FST_WS_GATE_REGISTRATION = createError(
  'FST_WS_GATE_REGISTRATION', 'fastify-ws-gate must be registered once, on the root instance: %s', 500)
export const FST_WS_GATE_INVALID_ROUTE_OPTION = createError(
  'FST_WS_GATE_INVALID_ROUTE_OPTION', 'Invalid option %s on route %s: %s', 500, TypeError)
export const FST_WS_GATE_HTTP2_NOT_SUPPORTED = createError(
  'FST_WS_GATE_HTTP2_NOT_SUPPORTED', '@fastify/websocket was registered before fastify-ws-gate on an HTTP/2 server: its routes could not be served over HTTP/2. Register it through fastify-ws-gate\'s `websocket` option, or pass `http2: false` to fastify-ws-gate', 500)
// Logged (at warn) when the gate is registered after routes it therefore
// never saw: upgrades to them get FST_WS_GATE_UNGATED_ROUTE.
export const FST_WS_GATE_REGISTERED_AFTER_ROUTES = createError(
  'FST_WS_GATE_REGISTERED_AFTER_ROUTES', 'fastify-ws-gate was registered after these routes, so it never saw their options; upgrades to them are answered 500. Register it (with await) before your routes:\n%s', 500)

// Malformed upgrade requests: answered before any application code runs.
export const FST_WS_GATE_BAD_REQUEST = createError(
  'FST_WS_GATE_BAD_REQUEST', '%s', 400)
export const FST_WS_GATE_METHOD_NOT_ALLOWED = createError(
  'FST_WS_GATE_METHOD_NOT_ALLOWED', 'A WebSocket upgrade must use GET, not %s', 405)
export const FST_WS_GATE_UNSUPPORTED_VERSION = createError(
  'FST_WS_GATE_UNSUPPORTED_VERSION', 'Unsupported Sec-WebSocket-Version %s: this server speaks version 13', 426)
export const FST_WS_GATE_NOT_WEBSOCKET_ROUTE = createError(
  'FST_WS_GATE_NOT_WEBSOCKET_ROUTE', 'Route %s %s has no WebSocket handler', 400)

// An upgrade that reached a route, or ws, by a path the gate does not guard
// (a route declared before the plugin was registered, ws's handleUpgrade()
// called by other code): answered 500 and logged, never upgraded.
export const FST_WS_GATE_UNGATED_ROUTE = createError(
  'FST_WS_GATE_UNGATED_ROUTE', 'The upgrade reached %s without passing fastify-ws-gate; it was refused', 500)

// A reply Fastify was about to send to an upgrade request could not go on
// the wire as it was (a 1xx status, a status message with CR or LF).
export const FST_WS_GATE_INVALID_REPLY = createError(
  'FST_WS_GATE_INVALID_REPLY', 'Invalid reply to an upgrade request: %s', 500)

// Protections (docs/security.md).
export const FST_WS_GATE_OVERLOADED = createError(
  'FST_WS_GATE_OVERLOADED', 'Too many handshakes are pending (maxPendingHandshakes is %s); try again later', 503)
export const FST_WS_GATE_ORIGIN_NOT_ALLOWED = createError(
  'FST_WS_GATE_ORIGIN_NOT_ALLOWED', 'Origin %s is not allowed', 403)
export const FST_WS_GATE_SHUTTING_DOWN = createError(
  'FST_WS_GATE_SHUTTING_DOWN', 'The server is shutting down', 503)

// Outcomes of a pending handshake.
export const FST_WS_GATE_HANDSHAKE_TIMEOUT = createError(
  'FST_WS_GATE_HANDSHAKE_TIMEOUT', 'The handshake was not decided within %s ms', 503)
export const FST_WS_GATE_CLIENT_CLOSED = createError(
  'FST_WS_GATE_CLIENT_CLOSED', 'The client closed the connection before the handshake was decided', 499)

// The handler threw something that is not an Error; it is wrapped in this so
// that Fastify's error handler sees an error, not a payload to send.
export const FST_WS_GATE_NON_ERROR_THROWN = createError(
  'FST_WS_GATE_NON_ERROR_THROWN', 'The handshake handler threw a value that is not an Error: %s', 500)

// Invalid decisions: programming errors, answered 500 and logged once.
export const FST_WS_GATE_INVALID_DECISION = createError(
  'FST_WS_GATE_INVALID_DECISION', 'The handshake handler must return accept() or reject(), got %s', 500)
export const FST_WS_GATE_INVALID_STATUS = createError(
  'FST_WS_GATE_INVALID_STATUS', 'A denial status must be an integer from 200 to 599, got %s', 500)
export const FST_WS_GATE_INVALID_HEADER = createError(
  'FST_WS_GATE_INVALID_HEADER', 'Invalid header %s: %s', 500)
export const FST_WS_GATE_FORBIDDEN_HEADER = createError(
  'FST_WS_GATE_FORBIDDEN_HEADER', 'Header %s belongs to the handshake itself and cannot be set by the application', 500)
export const FST_WS_GATE_PROTOCOL_NOT_OFFERED = createError(
  'FST_WS_GATE_PROTOCOL_NOT_OFFERED', 'Subprotocol %s was not offered by the client (offered: %s)', 500)
export const FST_WS_GATE_INVALID_BODY = createError(
  'FST_WS_GATE_INVALID_BODY', 'Invalid denial body: %s', 500)
export const FST_WS_GATE_BODY_STREAM_ERROR = createError(
  'FST_WS_GATE_BODY_STREAM_ERROR', 'The denial body stream failed after the response had started: %s', 500)

// asgi(): the application broke the message protocol. `send` rejects with
// these; the messages use the reference server's (uvicorn's) wording.
export const FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE = createError(
  'FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE', '%s', 500)
export const FST_WS_GATE_ASGI_INVALID_MESSAGE = createError(
  'FST_WS_GATE_ASGI_INVALID_MESSAGE', 'Invalid ASGI message %s: %s', 500)
export const FST_WS_GATE_ASGI_CLIENT_DISCONNECTED = createError(
  'FST_WS_GATE_ASGI_CLIENT_DISCONNECTED', 'The client has disconnected; %s cannot be sent', 500)
export const FST_WS_GATE_ASGI_NO_DECISION = createError(
  'FST_WS_GATE_ASGI_NO_DECISION', 'ASGI callable returned without completing handshake.', 500)
export const FST_WS_GATE_ASGI_INCOMPLETE_RESPONSE = createError(
  'FST_WS_GATE_ASGI_INCOMPLETE_RESPONSE', 'ASGI callable returned without completing the denial response.', 500)

// Connection limits (docs/limits.md).
// A store could not say whether a connection may open (Redis down, cut off,
// or slower than the store's timeout): the handshake is decided by
// onStoreError ('deny': 503 with Retry-After). The message says which call
// failed and why; the client's own error, if any, is the cause.
export const FST_WS_GATE_LIMIT_STORE_UNAVAILABLE = createError(
  'FST_WS_GATE_LIMIT_STORE_UNAVAILABLE', 'The connection limit store is unavailable: %s', 503)

// A store, or a node's leases, used after close() (the server is shutting down).
export const FST_WS_GATE_LIMIT_STORE_CLOSED = createError(
  'FST_WS_GATE_LIMIT_STORE_CLOSED', 'The connection limit store is closed', 503)

// A connection over one of its route's limits: 429 with Retry-After (or the
// close frame 4429 under rejectVia: 'close-frame'). The key is not in the
// message: it may name a user or an address, and the message goes to the client.
export const FST_WS_GATE_CONNECTION_LIMIT = createError(
  'FST_WS_GATE_CONNECTION_LIMIT', 'Too many open connections; try again later', 429)
