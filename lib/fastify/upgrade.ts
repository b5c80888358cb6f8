// One upgrade as the Fastify face sees it, from the gate's checks to its
// outcome: the wire that owns its socket or stream (HTTP/1.1 or HTTP/2), the route's handshake (it
// is the handshake's owner: it turns answers into the wire's work and
// Fastify's reply), and what the outcome is reported with.
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import { FST_WS_GATE_NON_ERROR_THROWN } from '../errors.js'
import { describe } from '../core/denial.js'
import { OUTCOMES, started, type HandshakeEvent, type Reported } from '../core/diagnostics.js'
import type { Denial } from '../core/denial.js'
import type { Handshake, HandshakeOwner, HandshakeState } from '../core/handshake.js'
import type { HeaderPairs } from '../core/headers.js'
import type { Refusal } from '../core/refusal.js'
import type { Http1Upgrade } from '../http1/upgrade.js'
import type { Http2Upgrade } from '../http2/upgrade.js'
import type { HandOver } from '../ws/handover.js'
import type { LimitRequest } from '../limits/store.js'
import { limitsOf, type Leases, type Rules } from './limits.js'

/** What every Upgrade needs of the plugin. */
export interface Gate {
  /** Releases the upgrade's count, publishes its outcome and logs it (status: what the log line says went out, null for none). */
  finish (upgrade: Upgrade, outcome: HandshakeEvent['outcome'], status: number | null, logged: number | null): void
  readonly handOver: HandOver
  /** This node's connection limit leases, once a route has limits. */
  readonly leases: Leases | undefined
}

export class Upgrade implements Reported, HandshakeOwner {
  /** Whether the outcome is known (then it no longer counts against maxPendingHandshakes). */
  finished = false
  route: string | null = null
  readonly started = started()
  /** What the next answer on the wire means (set by whoever answers); a completed handshake (101, or :status 200) otherwise means accepted. */
  expected: HandshakeEvent['outcome'] | undefined = undefined
  /** A close-frame refusal's reject() status: the outcome's status when its 101 goes out. */
  refusal: number | undefined = undefined
  /** Set once routed: for the log line, and the handshake's face. */
  request: FastifyRequest | undefined = undefined
  reply: FastifyReply | undefined = undefined
  /** The wire that owns the upgrade's socket (HTTP/1.1) or stream (HTTP/2). */
  wire!: Http1Upgrade | Http2Upgrade
  /** The connection limits the accept took: released when the connection closes, or at once if it never opens. */
  lease: string | undefined = undefined
  readonly url: string
  readonly #gate: Gate
  // Set by handle(), before the handshake uses this owner.
  #instance!: FastifyInstance
  #next!: RouteHandlerMethod
  #rules: Rules | undefined = undefined

  constructor (url: string, gate: Gate) {
    this.url = url
    this.#gate = gate
  }

  /** What went on the wire (see Http1Upgrade's report). */
  sent (status: number | null, upgraded: boolean): void {
    let outcome: HandshakeEvent['outcome']
    if (status === null) outcome = 'aborted'
    else if (!upgraded) outcome = this.expected === undefined || this.expected === 'accepted' ? 'rejected' : this.expected
    else outcome = this.expected ?? 'accepted'
    this.#gate.finish(this, outcome, upgraded && this.refusal !== undefined ? this.refusal : status, status)
    const { lease } = this
    if (lease === undefined) return
    const leases = this.#gate.leases as Leases
    if (upgraded) leases.hold(lease, this.wire.socket)
    else leases.release(lease)
  }

  /** The route's request, for answers and the log line. */
  routed (request: FastifyRequest, reply: FastifyReply): void {
    this.request = request
    this.reply = reply
  }

  /** A gated route takes the upgrade: the route handler behind the gate, and the route's connection limits. */
  handle (instance: FastifyInstance, next: RouteHandlerMethod, rules: Rules | undefined): void {
    this.#instance = instance
    this.#next = next
    this.#rules = rules
  }

  // Asked only on routes with limits (the handshake has a limiter only then).
  limits (): readonly LimitRequest[] {
    return limitsOf(this.#rules as Rules, this.request as FastifyRequest)
  }

  get log (): FastifyRequest['log'] {
    return (this.request as FastifyRequest).log
  }

  settled (state: HandshakeState, status: number | undefined): void {
    this.wire.unwatch(state === 'accepted' || state === 'refused' || state === 'limited')
    const outcome = OUTCOMES[state as Exclude<HandshakeState, 'pending' | 'admitting'>]
    // A failure with no status is answered by the app's error handler,
    // through Fastify's reply, which logs it.
    if (state === 'failed' && status === undefined) this.#gate.finish(this, outcome, null, null)
    else this.expected = outcome
  }

  accept (protocol: string | undefined, headers: HeaderPairs | undefined, lease: string | undefined): void {
    const request = this.request as FastifyRequest
    this.lease = lease
    this.wire.admit(protocol, headers)
    request.log.debug({ protocol }, 'handshake accepted')
    // @fastify/websocket's handler behind the gate's: it hands the request to
    // ws (through the gate's handleUpgrade), then runs the route's WebSocket
    // handler.
    this.#next.call(this.#instance, request, this.reply as FastifyReply)
  }

  deny (denial: Denial): void {
    (this.reply as FastifyReply).hijack()
    this.wire.deny(denial, this.log)
  }

  // Straight to ws: the route's WebSocket handler never runs.
  refuse (refusal: Refusal): void {
    (this.reply as FastifyReply).hijack()
    this.refusal = refusal.status
    this.wire.refuse(this.#gate.handOver, this.log, refusal)
  }

  fail (err: unknown): void {
    (this.reply as FastifyReply).send(err instanceof Error ? err : new FST_WS_GATE_NON_ERROR_THROWN(describe(err)))
    this.wire.hold()
  }

  watch (handshake: Handshake): void {
    this.wire.watch((message) => { handshake.gone(message) })
  }

  cut (): void {
    this.wire.cut()
  }
}
