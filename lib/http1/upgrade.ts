// One HTTP/1.1 upgrade, from the checks to its answer: the party that owns
// its socket. It notices a client that leaves while the decision is pending
// (keeping what the client sends early, for the WebSocket), writes the
// denial, or hands the socket to ws with the chosen subprotocol and headers,
// and reports once what went on the wire: a status, or nothing (the client
// left first). It knows nothing of Fastify.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Denial } from '../core/denial.js'
import type { HandshakeLogger } from '../core/handshake.js'
import type { DenialLimits } from '../core/headers.js'
import { WireUpgrade, type Reporter } from '../wire.js'
import { guard, writeDenial } from './response.js'

// A client must wait for the 101 before it sends frames (RFC 6455 §4.1); what
// it sends early is kept for the WebSocket, up to this much.
const MAX_EARLY_BYTES = 64 * 1024

// What only a watched upgrade needs (most are answered before anything needs
// watching): its socket listeners and what the client sent early.
interface Watching {
  readonly data: (chunk: Buffer) => void
  readonly gone: () => void
  early: Buffer[] | undefined
  earlyBytes: number
}

export class Http1Upgrade extends WireUpgrade<Duplex> {
  #watching: Watching | undefined = undefined

  constructor (req: IncomingMessage, socket: Duplex, head: Buffer, offered: string[], limits: DenialLimits, reporter: Reporter) {
    super(req, socket, head, offered, limits, reporter, 101)
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
    this.done(null)
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
    this.done(denial.status)
    writeDenial(this.socket, denial, log, this.limits)
  }

  protected bound (): void {
    guard(this.socket, this.limits.timeout)
  }

  cut (): void {
    this.socket.destroy()
    // If the answer had not gone out (ws threw before the 101), nothing has.
    this.done(null)
  }
}
