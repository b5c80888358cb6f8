// The errors of the connection limits (issue 20). They live here, beside the
// stores, until the limits are wired into the gate; then they move to
// lib/errors.ts with every other FST_WS_GATE_* code and are listed in
// docs/api.md. The status code is the one a client sees when the error ends a
// handshake.
import createError from '@fastify/error'

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
