// One WebSocket handshake over HTTP/2 (RFC 8441): the party that owns its
// stream, from the checks to the answer. It notices a client that resets the
// stream (or loses its session) while the decision is pending, writes the
// denial as a response on the stream, or answers :status 200 and hands the
// stream to ws, and reports once what went on the wire: a status, or nothing
// (the client left first). The session and its other streams are never
// touched. It knows nothing of Fastify.
import type { IncomingMessage } from 'node:http'
import { constants, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2'
import type { Denial } from '../core/denial.js'
import type { HandshakeLogger } from '../core/handshake.js'
import type { DenialLimits, HeaderPairs } from '../core/headers.js'
import { WireUpgrade, type Reporter } from '../wire.js'
import { guard, toFields, writeDenial } from './response.js'

// Over HTTP/2 a client sends no frames before the :status 200; any DATA waits
// in the stream, under flow control.
const EMPTY = Buffer.alloc(0)
// How many WebSockets a session carries (see keepSession()).
const kOpen = Symbol('fastify-ws-gate.open')

interface Session extends ServerHttp2Session {
  [kOpen]?: number
}

export class Http2Upgrade extends WireUpgrade<ServerHttp2Stream> {
  /** The stream's session (the stream forgets it once destroyed). */
  readonly session: ServerHttp2Session
  #watching: (() => void) | undefined = undefined
  readonly #idleTimeout: number

  /** `idleTimeout`: the session timeout to restore once a session carries no WebSocket. */
  constructor (req: IncomingMessage, stream: ServerHttp2Stream, offered: string[], limits: DenialLimits, reporter: Reporter, idleTimeout: number) {
    super(req, stream, EMPTY, offered, limits, reporter, 200)
    this.session = stream.session as ServerHttp2Session
    this.#idleTimeout = idleTimeout
  }

  /** Notices the client leaving while a decision is pending (a reset stream, a closed session); then calls `gone`. */
  watch (gone: (message?: string) => void): void {
    const stream = this.socket
    const leave = this.#watching = (): void => {
      this.unwatch()
      this.done(null)
      gone()
    }
    if (stream.destroyed) {
      leave()
      return
    }
    stream.once('close', leave)
  }

  /** Stops watching. Nothing was read: the stream goes to ws as Node left it. */
  unwatch (): void {
    const leave = this.#watching
    if (leave === undefined) return
    this.#watching = undefined
    this.socket.removeListener('close', leave)
  }

  /** Writes a denial as the stream's response, then closes the stream. */
  deny (denial: Denial, log: HandshakeLogger): void {
    this.unwatch()
    this.done(denial.status)
    writeDenial(this.socket, denial, log, this.limits)
  }

  /** The accept's :status 200, with the subprotocol, extensions and headers the hand-over gives. */
  respond (headers: HeaderPairs): boolean {
    const stream = this.socket
    if (stream.destroyed || stream.closed) {
      this.done(null)
      return false
    }
    stream.respond(toFields(200, headers))
    this.done(200)
    keepSession(stream, this.#idleTimeout)
    return true
  }

  protected bound (): void {
    guard(this.socket, this.limits.timeout)
  }

  cut (): void {
    this.socket.close(constants.NGHTTP2_INTERNAL_ERROR)
    this.done(null)
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
