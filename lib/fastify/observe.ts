// Observability through node:diagnostics_channel, as undici and Fastify do it:
// one channel, `fastify-ws-gate:handshake`, with every handshake's outcome.
// Nothing is built or published while nobody subscribes.
import diagnostics from 'node:diagnostics_channel'
import { performance } from 'node:perf_hooks'
import type { HandshakeState } from '../engine/handshake.js'

export const HANDSHAKE_CHANNEL = 'fastify-ws-gate:handshake'
const channel = diagnostics.channel(HANDSHAKE_CHANNEL)

/** What is published on `fastify-ws-gate:handshake`. */
export interface HandshakeEvent {
  outcome: 'accepted' | 'rejected' | 'timeout' | 'aborted' | 'error' | 'shed'
  /** The route's URL pattern (`/rooms/:room`); null for a shed upgrade, which is never routed. */
  route: string | null
  /** The request URL as sent. */
  url: string
  /** The status written (101 for accepted), or null: a client that left, or an error answered by the app's error handler. */
  status: number | null
  /** Milliseconds from the handshake handler's start to the outcome (0 for shed). */
  duration: number
}

const OUTCOMES: Record<Exclude<HandshakeState, 'pending'>, HandshakeEvent['outcome']> = {
  accepted: 'accepted',
  denied: 'rejected',
  refused: 'rejected',
  'shut-down': 'rejected',
  failed: 'error',
  'timed-out': 'timeout',
  gone: 'aborted'
}

/** The engine's report hook for one handshake, or undefined when nobody listens. */
export function reporter (route: string, url: string): ((state: HandshakeState, status: number | undefined) => void) | undefined {
  if (!channel.hasSubscribers) return undefined
  const started = performance.now()
  return (state, status) => {
    channel.publish({
      outcome: OUTCOMES[state as Exclude<HandshakeState, 'pending'>],
      route,
      url,
      status: status ?? null,
      duration: performance.now() - started
    } satisfies HandshakeEvent)
  }
}

export function publishShed (url: string): void {
  if (channel.hasSubscribers) channel.publish({ outcome: 'shed', route: null, url, status: 503, duration: 0 } satisfies HandshakeEvent)
}
