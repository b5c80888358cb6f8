// One WebSocket handshake over HTTP/2 (RFC 8441): the party that owns its
// stream, from the checks to the answer. It notices a client that resets the
// stream (or loses its session) while the decision is pending, writes the
// denial as a response on the stream, or answers :status 200 and hands the
// stream to ws, and reports once what went on the wire: a status, or nothing
// (the client left first). The session and its other streams are never
// touched. It knows nothing of Fastify.
import type { IncomingMessage } from 'node:http'
import { constants, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2'
import type { WebSocket } from 'ws'
import type { Denial } from '../core/denial.js'
import type { HandshakeLogger } from '../core/handshake.js'
import type { DenialLimits, HeaderPairs } from '../core/headers.js'
import type { Refusal } from '../core/refusal.js'
import type { Reporter } from '../http1/upgrade.js'
import type { HandOver } from '../ws/handover.js'
import { guard, toFields, writeDenial } from './response.js'

// The bits of an upgrade's state, as in Http1Upgrade.
const ADMITTED = 1
const ANSWERED = 2
const HELD = 4

const EMPTY = Buffer.alloc(0)
// How many WebSockets a session carries (see keepSession()).
const kOpen = Symbol('fastify-ws-gate.open')

type Connected = (ws: WebSocket, req: IncomingMessage) => void

interface Session extends ServerHttp2Session {
  [kOpen]?: number
}

export class Http2Upgrade {
  readonly req: IncomingMessage
  /** The stream the WebSocket would run on: ws reads and writes it as its socket. */
  readonly socket: ServerHttp2Stream
  /** The stream's session (the stream forgets it once destroyed). */
  readonly session: ServerHttp2Session
  /** Over HTTP/2 a client sends no frames before the :status 200; any DATA waits in the stream, under flow control. */
  readonly head = EMPTY
  readonly offered: string[]
  protocol: string | undefined = undefined
  headers: HeaderPairs | undefined = undefined
  #state = 0
  #watching: (() => void) | undefined = undefined
  readonly #limits: DenialLimits
  readonly #reporter: Reporter
  readonly #idleTimeout: number

  /** `idleTimeout`: the session timeout to restore once a session carries no WebSocket. */
  constructor (req: IncomingMessage, stream: ServerHttp2Stream, offered: string[], limits: DenialLimits, reporter: Reporter, idleTimeout: number) {
    this.req = req
    this.socket = stream
    this.session = stream.session as ServerHttp2Session
    this.offered = offered
    this.#limits = limits
    this.#reporter = reporter
    this.#idleTimeout = idleTimeout
  }

  admit (protocol: string | undefined, headers: HeaderPairs | undefined): void {
    this.#state |= ADMITTED
    this.protocol = protocol
    this.headers = headers
  }

  /** While another party has the request, the stream may close first: then that is the outcome. */
  hold (): void {
    if ((this.#state & (ANSWERED | HELD)) !== 0) return
    this.#state |= HELD
    this.socket.once('close', () => { this.#done(null) })
  }

  /** Notices the client leaving while a decision is pending (a reset stream, a closed session); then calls `gone`. */
  watch (gone: (message?: string) => void): void {
    const stream = this.socket
    const leave = this.#watching = (): void => {
      this.unwatch(false)
      this.#done(null)
      gone()
    }
    if (stream.destroyed) {
      leave()
      return
    }
    stream.once('close', leave)
  }

  /** Stops watching. Nothing was read: the stream goes to ws as Node left it. */
  unwatch (_handOver: boolean): void {
    const leave = this.#watching
    if (leave === undefined) return
    this.#watching = undefined
    this.socket.removeListener('close', leave)
  }

  /** Writes a denial as the stream's response, then closes the stream. */
  deny (denial: Denial, log: HandshakeLogger): void {
    this.unwatch(false)
    this.#done(denial.status)
    writeDenial(this.socket, denial, log, this.#limits)
  }

  /** Another party answers (Fastify's reply through the compatibility layer); it must be out within the denial timeout. */
  replied (): void {
    this.#state |= ANSWERED
    guard(this.socket, this.#limits.timeout)
  }

  /** The accept's :status 200, with the subprotocol, extensions and headers the hand-over gives. */
  respond (headers: HeaderPairs): boolean {
    const stream = this.socket
    if (stream.destroyed || stream.closed) {
      this.#done(null)
      return false
    }
    stream.respond(toFields(200, headers))
    this.#done(200)
    keepSession(stream, this.#idleTimeout)
    return true
  }

  /** Answers :status 200 and hands the stream to ws: then `connected` with the WebSocket. */
  accept (handOver: HandOver, log: HandshakeLogger, connected: Connected): void {
    this.unwatch(true)
    handOver.complete(this, log, this.protocol, this.headers, connected)
    this.hold()
  }

  /** Completes the handshake as for an accept, then closes at once with the refusal's code (rejectVia 'close-frame'). */
  refuse (handOver: HandOver, log: HandshakeLogger, refusal: Refusal): void {
    this.unwatch(true)
    handOver.complete(this, log, refusal.protocol, refusal.headers, (ws) => {
      ws.close(refusal.code, refusal.reason)
      guard(this.socket, this.#limits.timeout)
    })
    this.hold()
  }

  /** An answer failed after it had started: nothing more can be sent on this stream. */
  cut (): void {
    this.socket.close(constants.NGHTTP2_INTERNAL_ERROR)
    this.#done(null)
  }

  #done (status: number | null): void {
    if ((this.#state & ANSWERED) !== 0) return
    this.#state |= ANSWERED
    this.#reporter.sent(status, status === 200)
  }
}

// A session with open WebSockets is not idle, though its WebSockets may be
// quiet for longer than the server's session timeout (Fastify's
// http2SessionTimeout), which would close the session and every WebSocket on
// it. The timeout is off while a WebSocket is open, and back once none is.
function keepSession (stream: ServerHttp2Stream, idleTimeout: number): void {
  const session = stream.session as Session
  const open = session[kOpen] ?? 0
  if (open === 0) session.setTimeout(0)
  session[kOpen] = open + 1
  stream.once('close', () => {
    const left = (session[kOpen] as number) - 1
    session[kOpen] = left
    if (left === 0 && !session.destroyed) session.setTimeout(idleTimeout)
  })
}
