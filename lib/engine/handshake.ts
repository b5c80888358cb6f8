// The handshake state machine, shared by every face (the Fastify plugin, asgi()):
//
//   pending ──accept──▶ accepted   (the face writes the 101)
//      │ ────deny────▶ denied     (we write the HTTP response and close)
//      │ ───refuse───▶ refused    (rejectVia close-frame: the face writes the
//      │                           101 and closes with 4000 + status)
//      │ ────error───▶ failed     (the face reports the application's error)
//      │ ──invalid───▶ failed     (we write 500 and log the programming error)
//      │ ──timeout───▶ timed-out  (we write 503 + Retry-After; the signal aborts)
//      └ client left ▶ gone       (nothing is written; the signal aborts)
//
// Only the first transition counts; whatever arrives later is dropped. While a
// decision is pending we read from the socket, which is the only way to learn
// that the client has gone.
import type { Duplex } from 'node:stream'
import {
  FST_WS_GATE_CLIENT_CLOSED,
  FST_WS_GATE_HANDSHAKE_TIMEOUT,
  FST_WS_GATE_INVALID_DECISION,
  FST_WS_GATE_PROTOCOL_NOT_OFFERED,
  FST_WS_GATE_SHUTTING_DOWN
} from '../errors.js'
import { isAccept, isDecision } from './decision.js'
import { describe, isStream, prepareDenial, writeDenial, type Denial } from './denial.js'
import { RETRY_LATER, sendError, toHeaderPairs, type DenialLimits, type HeaderPairs } from './http.js'
import { prepareRefusal, type Refusal } from './refusal.js'

export interface HandshakeLogger {
  debug (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

/** What a face provides: the parts of a handshake that depend on the framework. */
export interface HandshakeFace {
  /** Where the handshake logs (a request's logger). */
  readonly log: HandshakeLogger
  /** Writes the 101 and starts the connection (the face owns the WebSocket server). `headers` is read-only: it may be shared. */
  upgrade (protocol: string | undefined, headers: HeaderPairs): void
  /** Writes the refusal's 101 and closes the connection at once with its code; the application's connection handler never runs. */
  refuse (refusal: Refusal): void
  /** The application failed before deciding. */
  error (err: unknown): void
  /** Called once, just before the engine writes a response of its own. */
  takeover (): void
  /** Told of the outcome once, when the handshake settles (observability). */
  settled (state: HandshakeState, status: number | undefined): void
}

export interface HandshakeContext {
  /** Aborts when the client leaves or the handshake times out. */
  readonly signal: AbortSignal
  /** The subprotocols offered in Sec-WebSocket-Protocol, in the client's order. */
  readonly protocols: readonly string[]
}

/**
 * What the handshakes of one route share, made once for the route: a
 * handshake is made for every upgrade, and keeps only a reference to these.
 */
export interface HandshakeSettings {
  /** Milliseconds before a pending decision is answered 503; 0 for never. */
  readonly timeout: number
  /** Caps on the responses the engine writes. */
  readonly limits: DenialLimits
  /** Where pending handshakes are kept (for shutdown): added here, removed once settled. */
  readonly registry: HandshakeRegistry
}

// What only a watched handshake needs (most settle before anything needs
// watching): its socket listeners, its timer and what the client sent early.
interface Watching {
  readonly data: (chunk: Buffer) => void
  readonly gone: () => void
  timer: NodeJS.Timeout | undefined
  early: Buffer[] | undefined
  earlyBytes: number
}

export type HandshakeState = 'pending' | 'accepted' | 'denied' | 'refused' | 'failed' | 'timed-out' | 'shut-down' | 'gone'

// A client must wait for the 101 before it sends frames (RFC 6455 §4.1); what
// it sends early is kept for the WebSocket, up to this much.
const MAX_EARLY_BYTES = 64 * 1024

// The 101's headers: ws writes them as UTF-8, so only ASCII keeps the bytes as given.
const ASCII_ONLY = { asciiOnly: true }
// A 101 with no headers of the application's, shared (faces only read it).
const NO_HEADERS: HeaderPairs = Object.freeze([]) as unknown as HeaderPairs

const INTERNAL_ERROR = { statusCode: 500, message: 'Internal Server Error' }

// A stream body that will never be sent is destroyed, so that its source (a
// file, a database cursor) is released.
function discardBody (decision: unknown): void {
  if (isDecision(decision) && !isAccept(decision) && isStream(decision.body)) decision.body.destroy?.()
}

// Most async handlers settle at once (a cache hit, a synchronous check behind
// `async`). Watching costs a read on the socket and four listeners, so it
// starts only for handshakes still pending one microtask turn after the
// decision's own reaction was queued: a promise already settled has been
// applied by then. Not the event loop's next turn, which costs a loop
// iteration per handshake under load (measured at about 5% of a handshake).
// One shared callback and a first-in, first-out queue (as microtasks are)
// rather than a closure per handshake. This was three turns: each costs a
// promise and a job (docs/benchmarks.md has what one turn instead of three saved).
const resolved = Promise.resolve()
const toWatch: Handshake[] = []
function watchNext (): void {
  const handshake = toWatch.shift() as Handshake
  if (handshake.pending) handshake.watch()
}
function watchSoon (handshake: Handshake): void {
  toWatch.push(handshake)
  resolved.then(watchNext)
}

// What a handler sees of its handshake: the offered subprotocols and the
// signal, made on first use. A class, so that the getter lives on a prototype.
class Context implements HandshakeContext {
  readonly #handshake: Handshake
  constructor (handshake: Handshake) {
    this.#handshake = handshake
  }

  get signal (): AbortSignal {
    return this.#handshake.signal
  }

  get protocols (): readonly string[] {
    return this.#handshake.protocols
  }
}

/**
 * The handshakes still pending in one place (a server), for shutdown. A list
 * threaded through the handshakes themselves: joining and leaving it, once per
 * handshake, allocate nothing and hash nothing.
 */
export class HandshakeRegistry {
  /** The latest pending handshake; the others follow it. Kept by Handshake. */
  first: Handshake | undefined = undefined

  /**
   * Answers every pending handshake 503 (the server is closing), newest first.
   * Each one leaves the list as it settles, and so does any other that settles
   * meanwhile, so none is answered twice.
   */
  shutdown (): void {
    for (let handshake = this.first; handshake !== undefined; handshake = this.first) handshake.shutdown()
  }
}

export class Handshake {
  readonly protocols: readonly string[]
  /** Told when the client leaves or the handshake times out, for faces whose application must hear of it (ASGI). */
  onAbandoned: ((reason: Error) => void) | undefined = undefined
  readonly #socket: Duplex
  readonly #face: HandshakeFace
  readonly #settings: HandshakeSettings
  readonly #closeFrame: boolean
  #previous: Handshake | undefined = undefined
  #next: Handshake | undefined = undefined
  #state: HandshakeState = 'pending'
  #controller: AbortController | undefined = undefined
  #abortReason: Error | undefined = undefined
  #watching: Watching | undefined = undefined

  /**
   * A pending handshake on `socket`, whose client offered `protocols`.
   * `closeFrame`: reject() decisions go out as a 101 and a close frame
   * (rejectVia 'close-frame') instead of an HTTP response.
   */
  constructor (socket: Duplex, protocols: readonly string[], face: HandshakeFace, settings: HandshakeSettings, closeFrame: boolean) {
    this.#socket = socket
    this.protocols = protocols
    this.#face = face
    this.#settings = settings
    this.#closeFrame = closeFrame
    const registry = settings.registry
    const next = registry.first
    if (next !== undefined) next.#previous = this
    this.#next = next
    registry.first = this
  }

  // Called once, when the handshake settles: every path to #settle checks
  // that the handshake is still pending (invalid() included, for an answer
  // that fails after it started). A second call would unlink the others.
  #leaveRegistry (): void {
    const previous = this.#previous
    const next = this.#next
    if (previous === undefined) this.#settings.registry.first = next
    else previous.#next = next
    if (next !== undefined) next.#previous = previous
    this.#previous = this.#next = undefined
  }

  get pending (): boolean {
    return this.#state === 'pending'
  }

  // Made on first use: most handlers never look at it, and a pending
  // handshake should cost as little memory as possible.
  get signal (): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#abortReason !== undefined) this.#controller.abort(this.#abortReason)
    }
    return this.#controller.signal
  }

  /** The second argument of a handshake handler. */
  context (): HandshakeContext {
    return new Context(this)
  }

  /** Takes what a handler returned: a decision, or a promise of one. */
  decide (result: unknown): void {
    if (typeof (result as PromiseLike<unknown> | null)?.then === 'function') {
      try {
        ;(result as PromiseLike<unknown>).then(
          (decision) => this.apply(decision),
          (err: unknown) => this.fail(err)
        )
      } catch (err) {
        // A thenable whose then() throws has failed, as `await` would say.
        this.fail(err)
        return
      }
      // After the reaction above, so that a settled promise is applied first.
      watchSoon(this)
    } else {
      this.apply(result)
    }
  }

  /** Applies a decision: 101, or the denial it describes, or 500 when it is invalid. */
  apply (decision: unknown): void {
    if (this.#state !== 'pending') {
      this.#late(decision)
      return
    }
    try {
      this.applyOrThrow(decision)
    } catch (err) {
      discardBody(decision)
      this.invalid(err)
    }
  }

  /**
   * Applies a decision, or throws its validation error and changes nothing,
   * for faces that must report the error to the application as well.
   */
  applyOrThrow (decision: unknown): void {
    if (!isDecision(decision)) throw new FST_WS_GATE_INVALID_DECISION(describe(decision))
    if (!isAccept(decision)) {
      if (this.#closeFrame) this.refuse(prepareRefusal(decision, this.protocols, this.#settings.limits))
      else this.deny(prepareDenial(decision, this.#settings.limits))
      return
    }
    const protocol = this.#checkProtocol(decision.protocol)
    const headers = decision.headers === undefined ? NO_HEADERS : toHeaderPairs(decision.headers, ASCII_ONLY)
    this.#settle('accepted', 101)
    this.#face.upgrade(protocol, headers)
  }

  /** Writes a prepared denial and closes the connection. */
  deny (denial: Denial): void {
    this.#settle('denied', denial.status)
    this.#face.takeover()
    this.#face.log.debug({ statusCode: denial.status }, 'handshake rejected')
    writeDenial(this.#socket, denial, this.#face.log, this.#settings.limits)
  }

  /** Whether reject() decisions go out as close frames (rejectVia), for faces that build refusals themselves. */
  get closeFrame (): boolean {
    return this.#closeFrame
  }

  /** Completes the handshake and closes at once with the refusal's code (rejectVia 'close-frame'). */
  refuse (refusal: Refusal): void {
    this.#settle('refused', refusal.status)
    this.#face.log.debug({ statusCode: refusal.status, closeCode: refusal.code }, 'handshake rejected with a close frame')
    this.#face.refuse(refusal)
  }

  /** The application failed before deciding: the face reports it. */
  fail (err: unknown): void {
    if (this.#state !== 'pending') {
      this.#face.log.debug({ err, state: this.#state }, 'handshake handler failed after the handshake was settled')
      return
    }
    this.#settle('failed', undefined)
    this.#face.error(err)
  }

  #checkProtocol (protocol: unknown): string | undefined {
    if (protocol === undefined) return undefined
    if (typeof protocol !== 'string' || !this.protocols.includes(protocol)) {
      throw new FST_WS_GATE_PROTOCOL_NOT_OFFERED(typeof protocol === 'string' ? JSON.stringify(protocol) : String(protocol), this.protocols.join(', ') || '(none)')
    }
    return protocol
  }

  /**
   * A programming error in the decision: the client gets a plain 500, the log gets the details, once.
   * When the answer has already started, the error is logged and the connection cut instead.
   */
  invalid (err: unknown): void {
    // The answer has already started (a 'connection' listener threw while
    // the 101 went out): no more bytes can be written, so the connection is cut.
    if (this.#state !== 'pending') {
      this.#face.log.error({ err, state: this.#state }, 'handshake failed after its answer was written')
      this.#socket.destroy()
      return
    }
    this.#settle('failed', 500)
    this.#face.takeover()
    this.#face.log.error({ err }, 'invalid handshake decision')
    sendError(this.#socket, INTERNAL_ERROR, [], this.#settings.limits)
  }

  #late (decision: unknown): void {
    discardBody(decision)
    this.#face.log.debug({ state: this.#state }, 'late handshake decision dropped')
  }

  /**
   * Starts watching the socket and the clock while the decision is pending.
   * decide() does it for a promise; a face that drives the engine itself
   * (ASGI) calls it before handing control to the application.
   */
  watch (): void {
    const socket = this.#socket
    if (socket.destroyed) {
      this.#gone()
      return
    }
    // Made here, not with the handshake: most handshakes settle before
    // anything needs watching.
    const watching: Watching = this.#watching = {
      data: (chunk: Buffer) => { this.#onData(watching, chunk) },
      gone: () => { this.#gone() },
      timer: undefined,
      early: undefined,
      earlyBytes: 0
    }
    socket.on('data', watching.data)
    socket.on('end', watching.gone)
    socket.on('close', watching.gone)
    socket.on('error', watching.gone)
    const { timeout } = this.#settings
    if (timeout > 0) {
      watching.timer = setTimeout(() => { this.#timedOut() }, timeout)
      watching.timer.unref()
    }
  }

  #settle (state: HandshakeState, status: number | undefined): void {
    this.#state = state
    this.#leaveRegistry()
    this.#face.settled(state, status)
    const watching = this.#watching
    if (watching === undefined) return
    this.#watching = undefined
    clearTimeout(watching.timer)
    const socket = this.#socket
    socket.removeListener('end', watching.gone)
    socket.removeListener('close', watching.gone)
    socket.removeListener('error', watching.gone)
    if (state === 'accepted' || state === 'refused') {
      // Hand the stream over exactly as Node left it after 'upgrade': not
      // flowing, early bytes first, so the WebSocket reads them as frames.
      socket.pause()
      socket.removeListener('data', watching.data)
      if (watching.early !== undefined) socket.unshift(Buffer.concat(watching.early))
      ;(socket as { readableFlowing: boolean | null }).readableFlowing = null
    } else {
      socket.removeListener('data', watching.data)
    }
  }

  #onData (watching: Watching, chunk: Buffer): void {
    watching.earlyBytes += chunk.length
    if (watching.earlyBytes > MAX_EARLY_BYTES) {
      this.#gone('client sent too much data before the handshake was decided')
      return
    }
    (watching.early ??= []).push(chunk)
  }

  #gone (message = 'client closed the connection during the handshake'): void {
    this.#abort('gone', new FST_WS_GATE_CLIENT_CLOSED())
    this.#socket.destroy()
    this.#face.log.debug({}, message)
  }

  #timedOut (): void {
    const { timeout } = this.#settings
    this.#face.log.warn({ timeout }, 'handshake timed out')
    this.#unavailable('timed-out', new FST_WS_GATE_HANDSHAKE_TIMEOUT(timeout))
  }

  /** The server is closing: a pending handshake (one still in the registry) is answered 503 with Retry-After. */
  shutdown (): void {
    this.#face.log.debug({}, 'handshake answered 503: the server is shutting down')
    this.#unavailable('shut-down', new FST_WS_GATE_SHUTTING_DOWN())
  }

  #unavailable (state: HandshakeState, err: Error & { statusCode: number, code: string }): void {
    this.#abort(state, err, 503)
    this.#face.takeover()
    sendError(this.#socket, err, RETRY_LATER, this.#settings.limits)
  }

  #abort (state: HandshakeState, reason: Error, status?: number): void {
    this.#settle(state, status)
    this.#abortReason = reason
    this.#controller?.abort(reason)
    this.onAbandoned?.(reason)
  }
}
