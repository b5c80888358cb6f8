// accept() and reject(): the two values a handshake handler may return. They
// only record what was asked; the engine validates them when it applies them,
// because some checks (was this subprotocol offered?) need the request.
import type { Readable } from 'node:stream'
import type { HeadersInput } from './headers.js'

// Symbol.for, so that two copies of the package in one process agree. Exported
// for the type declarations only; the package entry does not re-export it.
export const kDecision: unique symbol = Symbol.for('fastify-ws-gate.decision')

/** A body for a denial: text, bytes, a JSON-serialisable object, or a stream. */
export type DenialBody = string | Uint8Array | Readable | NodeJS.ReadableStream | Record<string, unknown> | unknown[]

export interface AcceptOptions {
  /** The subprotocol to select; must be one the client offered. */
  protocol?: string
  /** Extra headers for the 101 response, e.g. Set-Cookie. */
  headers?: HeadersInput
}

export interface RejectOptions {
  headers?: HeadersInput
  body?: DenialBody
}

export interface AcceptDecision {
  readonly [kDecision]: 'accept'
  readonly protocol?: string
  readonly headers?: HeadersInput
}

export interface RejectDecision {
  readonly [kDecision]: 'reject'
  readonly status: number
  readonly reason?: string
  readonly headers?: HeadersInput
  readonly body?: DenialBody
}

/** What a handshake handler returns: made only by accept() or reject(). */
export type HandshakeDecision = AcceptDecision | RejectDecision

// The common accept(), made once: a decision is a value, and this one never changes.
const ACCEPT: AcceptDecision = Object.freeze({ [kDecision]: 'accept' as const, protocol: undefined, headers: undefined })

/** Completes the handshake with 101 Switching Protocols (ASGI `websocket.accept`). */
export function accept (options?: AcceptOptions): AcceptDecision {
  if (options === undefined) return ACCEPT
  return { [kDecision]: 'accept', protocol: options.protocol, headers: options.headers }
}

/**
 * Turns the handshake down with an HTTP response. A bare reject() is ASGI's
 * `websocket.close` before accept: 403 with an empty body. With a status it is
 * the denial-response extension; with a reason and no body, the body is
 * Fastify's error shape.
 */
export function reject (status = 403, reason?: string, options: RejectOptions = {}): RejectDecision {
  return { [kDecision]: 'reject', status, reason, headers: options.headers, body: options.body }
}

export function isDecision (value: unknown): value is HandshakeDecision {
  return typeof value === 'object' && value !== null &&
    ((value as AcceptDecision)[kDecision] === 'accept' || (value as RejectDecision)[kDecision] === 'reject')
}

export function isAccept (decision: HandshakeDecision): decision is AcceptDecision {
  return decision[kDecision] === 'accept'
}
