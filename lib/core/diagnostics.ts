// Observability through node:diagnostics_channel, as undici and Fastify do it:
// one channel, `fastify-ws-gate:handshake`, with every handshake's outcome.
// Nothing is built or published while nobody subscribes.
import diagnostics from 'node:diagnostics_channel'
import { performance } from 'node:perf_hooks'
import type { HandshakeState } from './handshake.js'

export const HANDSHAKE_CHANNEL = 'fastify-ws-gate:handshake'
const channel = diagnostics.channel(HANDSHAKE_CHANNEL)

/** What is published on `fastify-ws-gate:handshake`. */
export interface HandshakeEvent {
  outcome: 'accepted' | 'rejected' | 'limited' | 'timeout' | 'aborted' | 'error' | 'shed'
  /** The route's URL pattern (`/rooms/:room`); null for an upgrade answered before routing (malformed, shed, during shutdown), or whose route the gate never saw (replied to by a hook, or left in hooks). */
  route: string | null
  /** The request URL as sent. */
  url: string
  /** The status written (101 for accepted), or null: a client that left, or an error answered by the app's error handler. */
  status: number | null
  /** Milliseconds from the upgrade's arrival at the gate to its outcome (0 for those answered at arrival). */
  duration: number
}

/** The engine's final states, as outcomes. */
export const OUTCOMES: Record<Exclude<HandshakeState, 'pending' | 'admitting'>, HandshakeEvent['outcome']> = {
  accepted: 'accepted',
  denied: 'rejected',
  refused: 'rejected',
  limited: 'limited',
  unavailable: 'error',
  'shut-down': 'rejected',
  failed: 'error',
  'timed-out': 'timeout',
  gone: 'aborted'
}

/** What the gate knows of an upgrade for its event. */
export interface Reported {
  /** The route's URL pattern, once routed to a gated route. */
  route: string | null
  url: string
  /** performance.now() when the upgrade reached the gate. */
  started: number
}

/** When an upgrade reached the gate, for its duration (taken even while nobody subscribes: one may subscribe before it ends). */
export function started (): number {
  return performance.now()
}

/** Publishes an upgrade's outcome (its caller makes sure it is once). */
export function publish (upgrade: Reported, outcome: HandshakeEvent['outcome'], status: number | null): void {
  if (!channel.hasSubscribers) return
  channel.publish({ outcome, route: upgrade.route, url: upgrade.url, status, duration: performance.now() - upgrade.started } satisfies HandshakeEvent)
}

/** An upgrade answered before it had state of its own (malformed, shed, arriving during shutdown). */
export function publishEarly (url: string, outcome: HandshakeEvent['outcome'], status: number): void {
  if (channel.hasSubscribers) channel.publish({ outcome, route: null, url, status, duration: 0 } satisfies HandshakeEvent)
}
