// One HTTP/1.1 upgrade, from the checks to its answer: the party that owns
// its socket. It notices a client that leaves while the decision is pending
// (keeping what the client sends early, for the WebSocket), writes the
// denial, or hands the socket to ws with the chosen subprotocol and headers,
// and reports once what went on the wire: a status, or nothing (the client
// left first). It knows nothing of Fastify.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { WebSocket } from 'ws'
import type { Denial } from '../core/denial.js'
import type { HandshakeLogger } from '../core/handshake.js'
import type { DenialLimits, HeaderPairs } from '../core/headers.js'
import type { Refusal } from '../core/refusal.js'
import { guard, writeDenial } from './response.js'
import type { HandOver } from '../ws/handover.js'

// The bits of an upgrade's state: ws may complete it; its answer has gone
// out, or the client has left, or another party answers; a 'close' listener
// of ours watches the socket.
const ADMITTED = 1
const ANSWERED = 2
const HELD = 4

// A client must wait for the 101 before it sends frames (RFC 6455 §4.1); what
// it sends early is kept for the WebSocket, up to this much.
const MAX_EARLY_BYTES = 64 * 1024

/** Whoever an upgrade reports to (its face's record). */
export interface Reporter {
  /**
   * Told once what went on the wire: the status written, or null when the
   * client left first. `upgraded`: the status completed the handshake (a
   * 101 over HTTP/1.1, a :status 200 over HTTP/2).
   */
  sent (status: number | null, upgraded: boolean): void
}

type Connected = (ws: WebSocket, req: IncomingMessage) => void

// What only a watched upgrade needs (most are answered before anything needs
// watching): its socket listeners and what the client sent early.
interface Watching {
  readonly data: (chunk: Buffer) => void
  readonly gone: () => void
  early: Buffer[] | undefined
  earlyBytes: number
}

export class Http1Upgrade {
  readonly req: IncomingMessage
  readonly socket: Duplex
  /** What the client sent after its request head (ws reads it as frames). */
  readonly head: Buffer
  /** The subprotocols the client offered. */
  readonly offered: string[]
  /** What the 101 carries, once the upgrade is admitted (see admit()). */
  protocol: string | undefined = undefined
  headers: HeaderPairs | undefined = undefined
  // What has happened to it, as bits (one field rather than three).
  #state = 0
  #watching: Watching | undefined = undefined
  readonly #limits: DenialLimits
  readonly #reporter: Reporter

  constructor (req: IncomingMessage, socket: Duplex, head: Buffer, offered: string[], limits: DenialLimits, reporter: Reporter) {
    this.req = req
    this.socket = socket
    this.head = head
    this.offered = offered
    this.#limits = limits
    this.#reporter = reporter
  }

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
    this.socket.once('close', () => { this.#done(null) })
  }

  /**
   * Reads the socket while a decision is pending, the only way to learn that
   * the client has gone; then calls `gone` (having dropped the connection).
   */
  watch (gone: (message?: string) => void): void {
    const socket = this.socket
    if (socket.destroyed) {
      this.#leave(gone)
      return
    }
    const watching: Watching = this.#watching = {
      data: (chunk: Buffer) => {
        watching.earlyBytes += chunk.length
        if (watching.earlyBytes > MAX_EARLY_BYTES) {
          this.#leave(gone, 'client sent too much data before the handshake was decided')
          return
        }
        (watching.early ??= []).push(chunk)
      },
      gone: () => { this.#leave(gone) },
      early: undefined,
      earlyBytes: 0
    }
    socket.on('data', watching.data)
    socket.on('end', watching.gone)
    socket.on('close', watching.gone)
    socket.on('error', watching.gone)
  }

  #leave (gone: (message?: string) => void, message?: string): void {
    this.unwatch(false)
    this.socket.destroy()
    this.#done(null)
    gone(message)
  }

  /**
   * Stops watching. `handOver`: the socket goes to ws next, exactly as Node
   * left it after 'upgrade': not flowing, early bytes first, so the
   * WebSocket reads them as frames.
   */
  unwatch (handOver: boolean): void {
    const watching = this.#watching
    if (watching === undefined) return
    this.#watching = undefined
    const socket = this.socket
    socket.removeListener('data', watching.data)
    socket.removeListener('end', watching.gone)
    socket.removeListener('close', watching.gone)
    socket.removeListener('error', watching.gone)
    if (!handOver) return
    if (watching.early !== undefined) socket.unshift(Buffer.concat(watching.early))
    ;(socket as { readableFlowing: boolean | null }).readableFlowing = null
  }

  /** Writes a denial, then closes the connection. */
  deny (denial: Denial, log: HandshakeLogger): void {
    this.unwatch(false)
    this.#done(denial.status)
    writeDenial(this.socket, denial, log, this.#limits)
  }

  /**
   * Another party answers (Fastify's reply, from a hook, the 404 handler or
   * the error handler; it reports that answer itself). Like the gate's own
   * answers, it must be out within the denial timeout.
   */
  replied (): void {
    this.#state |= ANSWERED
    guard(this.socket, this.#limits.timeout)
  }

  /** Hands the socket to ws: the 101 with what admit() said, then `connected` with the WebSocket. */
  accept (handOver: HandOver, log: HandshakeLogger, connected: Connected): void {
    this.unwatch(true)
    handOver.complete(this, log, this.protocol, this.headers, (ws, req) => {
      this.#done(101)
      connected(ws, req)
    })
    this.hold()
  }

  /** Completes the handshake as for an accept, then closes at once with the refusal's code (rejectVia 'close-frame'). */
  refuse (handOver: HandOver, log: HandshakeLogger, refusal: Refusal): void {
    this.unwatch(true)
    handOver.complete(this, log, refusal.protocol, refusal.headers, (ws) => {
      this.#done(101)
      ws.close(refusal.code, refusal.reason)
      // Like a denial, a refusal must be over within the denial timeout, even
      // with a client that never answers the close frame.
      guard(this.socket, this.#limits.timeout)
    })
    this.hold()
  }

  /** An answer failed after it had started: nothing more can be written. */
  cut (): void {
    this.socket.destroy()
    // Nothing more goes out: if the answer had not (ws threw before the 101), that is the outcome.
    this.#done(null)
  }

  #done (status: number | null): void {
    if ((this.#state & ANSWERED) !== 0) return
    this.#state |= ANSWERED
    this.#reporter.sent(status, status === 101)
  }
}
