// What both wires' upgrades share (lib/http1/upgrade.ts, lib/http2/upgrade.ts):
// the request and its socket or stream, what the decision admitted, the
// answered/held state, the hand-over to ws for an accept or a close-frame
// refusal, and the one report of what went on the wire. Each wire adds how it
// watches the client, writes a denial, bounds an answer in time, and cuts.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Denial } from './core/denial.js'
import type { HandshakeLogger } from './core/handshake.js'
import type { DenialLimits, HeaderPairs } from './core/headers.js'
import type { Refusal } from './core/refusal.js'
import type { Completed, HandOver } from './ws/handover.js'

/** Whoever an upgrade reports to (its face's record). */
export interface Reporter {
  /**
   * Told once what went on the wire: the status written, or null when the
   * client left first. `upgraded`: the status completed the handshake (a
   * 101 over HTTP/1.1, a :status 200 over HTTP/2).
   */
  sent (status: number | null, upgraded: boolean): void
}

// The bits of an upgrade's state: ws may complete it; its answer has gone
// out, or the client has left, or another party answers; a 'close' listener
// of ours watches the socket.
const ADMITTED = 1
const ANSWERED = 2
const HELD = 4

export abstract class WireUpgrade<Socket extends Duplex> {
  readonly req: IncomingMessage
  /** The connection (HTTP/1.1) or the stream (HTTP/2) the WebSocket would run on. */
  readonly socket: Socket
  /** What the client sent after its request head (ws reads it as frames). */
  readonly head: Buffer
  /** The subprotocols the client offered. */
  readonly offered: string[]
  /** What the completed handshake carries, once the upgrade is admitted (see admit()). */
  protocol: string | undefined = undefined
  headers: HeaderPairs | undefined = undefined
  protected readonly limits: DenialLimits
  // What has happened to it, as bits (one field rather than three).
  #state = 0
  readonly #reporter: Reporter
  /** The status that completes a handshake on this wire. */
  readonly #upgraded: number

  constructor (req: IncomingMessage, socket: Socket, head: Buffer, offered: string[], limits: DenialLimits, reporter: Reporter, upgraded: number) {
    this.req = req
    this.socket = socket
    this.head = head
    this.offered = offered
    this.limits = limits
    this.#reporter = reporter
    this.#upgraded = upgraded
  }

  /** Reads or listens to the socket while a decision is pending; calls `gone` (having dropped it) when the client leaves. */
  abstract watch (gone: (message?: string) => void): void
  /** Stops watching; `handOver`: the socket goes to ws next. */
  abstract unwatch (handOver: boolean): void
  /** Writes a denial, then ends the connection (or the stream). */
  abstract deny (denial: Denial, log: HandshakeLogger): void
  /** An answer failed after it had started: nothing more can be written; that is the outcome if nothing was. */
  abstract cut (): void
  /** Ends the socket if it is still open once the denial timeout has passed. */
  protected abstract bound (): void

  /** Whether the upgrade may be completed (see admit()). */
  get admitted (): boolean {
    return (this.#state & ADMITTED) !== 0
  }

  /**
   * The decision lets the upgrade through: a route without a decision of its
   * own (ws's choice of subprotocol, `headers` undefined), or an accept.
   */
  admit (protocol: string | undefined, headers: HeaderPairs | undefined): void {
    this.#state |= ADMITTED
    this.protocol = protocol
    this.headers = headers
  }

  /**
   * While another party has the request (the application's hooks or error
   * handler, ws's verifyClient), the socket may close first: then that is
   * the outcome. Most upgrades are answered before they are handed on, so
   * their sockets get no listener of ours (docs/benchmarks.md).
   */
  hold (): void {
    if ((this.#state & (ANSWERED | HELD)) !== 0) return
    this.#state |= HELD
    this.socket.once('close', () => { this.done(null) })
  }

  /**
   * Another party answers (Fastify's reply, from a hook, the 404 handler or
   * the error handler; it reports that answer itself). Like the gate's own
   * answers, it must be out within the denial timeout.
   */
  replied (): void {
    this.#state |= ANSWERED
    this.bound()
  }

  /** Hands the socket to ws: the completed handshake with what admit() said, then `connected` with the WebSocket. */
  accept (handOver: HandOver, log: HandshakeLogger, connected: Completed): void {
    this.unwatch(true)
    handOver.complete(this, log, this.protocol, this.headers, (ws, req) => {
      this.done(this.#upgraded)
      connected(ws, req)
    })
    this.hold()
  }

  /** Completes the handshake as for an accept, then closes at once with the refusal's code (rejectVia 'close-frame'). */
  refuse (handOver: HandOver, log: HandshakeLogger, refusal: Refusal): void {
    this.unwatch(true)
    handOver.complete(this, log, refusal.protocol, refusal.headers, (ws) => {
      this.done(this.#upgraded)
      ws.close(refusal.code, refusal.reason)
      // Like a denial, a refusal must be over within the denial timeout, even
      // with a client that never answers the close frame.
      this.bound()
    })
    this.hold()
  }

  /** Reports what went on the wire, once. */
  protected done (status: number | null): void {
    if ((this.#state & ANSWERED) !== 0) return
    this.#state |= ANSWERED
    this.#reporter.sent(status, status === this.#upgraded)
  }
}
