// The handshake state machine, shared by every wire and every face. It takes
// what the application decides and gives its owner (the party that holds the
// connection) a validated answer to send; it writes nothing itself.
//
//   pending ──accept──▶ accepted   owner.accept(protocol, headers, lease): the 101 (or :status 200)
//      │ ──accept, with connection limits──▶ admitting ──room──▶ accepted
//      │                                        │ ───full───▶ limited      owner.deny(429 + Retry-After), or refuse(4429)
//      │                                        └ store down ▶ unavailable owner.deny(503 + Retry-After) (onStoreError 'deny')
//      │ ────deny────▶ denied     owner.deny(denial): status, headers, body
//      │ ───refuse───▶ refused    owner.refuse(refusal): the handshake completed, then close code 4000 + status
//      │ ────error───▶ failed     owner.fail(err): the face reports the application's error
//      │ ──invalid───▶ failed     owner.deny(500) (the programming error is logged)
//      │ ──deadline──▶ timed-out  owner.deny(503 + Retry-After); the signal aborts
//      │ ──shutdown──▶ shut-down  owner.deny(503 + Retry-After); the signal aborts
//      └ client left ▶ gone       nothing to send; the signal aborts
//
// Only the first transition counts; whatever arrives later is dropped. While
// admitting, the decision has been taken but the limits are being counted
// (the store may be across the network): the deadline, the client leaving
// and shutdown still end the handshake, and a lease taken too late is
// released.
import {
  FST_WS_GATE_CLIENT_CLOSED,
  FST_WS_GATE_HANDSHAKE_TIMEOUT,
  FST_WS_GATE_INVALID_DECISION,
  FST_WS_GATE_PROTOCOL_NOT_OFFERED,
  FST_WS_GATE_SHUTTING_DOWN
} from '../errors.js'
import { FST_WS_GATE_CONNECTION_LIMIT } from '../errors.js'
import type { Admission, LeaseKeeper } from '../limits/leases.js'
import type { LimitRequest } from '../limits/store.js'
import { isAccept, isDecision } from './decision.js'
import { checkDenial, describe, discardBody, errorDenial, prepareDenial, type Denial } from './denial.js'
import { RETRY_LATER, toHeaderPairs, type DenialLimits, type HeaderPairs } from './headers.js'
import { prepareRefusal, toRefusal, type Refusal } from './refusal.js'

export interface HandshakeLogger {
  debug (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

/** The party that holds the connection while its handshake is decided: a wire, through its face. */
export interface HandshakeOwner {
  /** Where the handshake logs (a request's logger). */
  readonly log: HandshakeLogger
  /** Told once, as the handshake settles, before any answer is sent. */
  settled (state: HandshakeState, status: number | undefined): void
  /**
   * Sends the 101 (or :status 200) with this subprotocol and these headers
   * (read-only: they may be shared); `headers` undefined: the route has no
   * decision of its own, and ws's rules choose the subprotocol. `lease`: the
   * connection limits it holds, to release when the connection closes. At
   * most one answer is asked for, after settled().
   */
  accept (protocol: string | undefined, headers: HeaderPairs | undefined, lease: string | undefined): void
  /**
   * The connection limits an accept must take before it goes out, with the
   * keys computed now (after the decision, so that it can have put the
   * identity on the request); undefined or empty for none. May throw: the
   * handshake then fails as for an invalid decision.
   */
  limits (): readonly LimitRequest[] | undefined
  /** Sends this denial. */
  deny (denial: Denial): void
  /** Completes the handshake, then closes with the refusal's code (rejectVia 'close-frame'). */
  refuse (refusal: Refusal): void
  /** The application failed before deciding: the face reports it. */
  fail (err: unknown): void
  /** Starts noticing the client leaving, and keeps what it sends early; it then calls gone(). At most once, while pending. */
  watch (handshake: Handshake): void
  /** An answer failed after it had started (a 'connection' listener threw during the 101): no more can be sent; cut the connection. */
  cut (): void
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
  /** Caps on the denials answers carry. */
  readonly limits: DenialLimits
  /** Where pending handshakes are kept (for shutdown): added here, removed once settled. */
  readonly registry: HandshakeRegistry
  /** Connection limits: this node's leases, and the Retry-After of a 429 (seconds). Absent when the route has none. */
  readonly limiter?: Limiter
}

export interface Limiter {
  readonly keeper: LeaseKeeper
  readonly retryAfter: HeaderPairs
}

export type HandshakeState = 'pending' | 'admitting' | 'accepted' | 'denied' | 'refused' | 'limited' | 'unavailable' | 'failed' | 'timed-out' | 'shut-down' | 'gone'

// A 101 with no headers of the application's, shared (owners only read it).
const NO_HEADERS: HeaderPairs = Object.freeze([]) as unknown as HeaderPairs
// The 101's headers: ws writes them as UTF-8, so only ASCII keeps the bytes as given.
const ASCII_ONLY = { asciiOnly: true }
const INTERNAL_ERROR = { statusCode: 500, message: 'Internal Server Error' }

// Most async handlers settle at once (a cache hit, a synchronous check behind
// `async`). Watching costs the owner a read on the connection and its
// listeners, so it starts only for handshakes still pending one microtask
// turn after the decision's own reaction was queued: a promise already
// settled has been applied by then. Not the event loop's next turn, which
// costs a loop iteration per handshake under load. One shared callback and a
// first-in, first-out queue (as microtasks are) rather than a closure per
// handshake (docs/benchmarks.md).
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
  /** Told when the client leaves, the handshake times out, the server shuts down, or an accept is refused by its connection limits (or their store), for faces whose application must hear of it (ASGI). */
  onAbandoned: ((reason: Error) => void) | undefined = undefined
  /** Told once an accept that waited for its connection limits has been handed to the owner, for faces that must know it went out (ASGI). */
  onAdmitted: (() => void) | undefined = undefined
  readonly #owner: HandshakeOwner
  readonly #settings: HandshakeSettings
  readonly #closeFrame: boolean
  #previous: Handshake | undefined = undefined
  #next: Handshake | undefined = undefined
  #state: HandshakeState = 'pending'
  #controller: AbortController | undefined = undefined
  #abortReason: Error | undefined = undefined
  #timer: NodeJS.Timeout | undefined = undefined
  #watched = false

  /**
   * A pending handshake whose client offered `protocols`, on a connection
   * `owner` holds. `closeFrame`: reject() decisions go out as a completed
   * handshake and a close frame (rejectVia 'close-frame') instead of a denial.
   */
  constructor (protocols: readonly string[], owner: HandshakeOwner, settings: HandshakeSettings, closeFrame: boolean) {
    this.protocols = protocols
    this.#owner = owner
    this.#settings = settings
    this.#closeFrame = closeFrame
    const registry = settings.registry
    const next = registry.first
    if (next !== undefined) next.#previous = this
    this.#next = next
    registry.first = this
  }

  // Called once, when the handshake settles: every path to #settle checks
  // that the handshake is still pending. A second call would unlink the others.
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

  /** Whether an accept is waiting for its connection limits to be counted. */
  get admitting (): boolean {
    return this.#state === 'admitting'
  }

  /** Whether reject() decisions go out as close frames (rejectVia), for faces that build denials themselves. */
  get closeFrame (): boolean {
    return this.#closeFrame
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

  /** Applies a decision: the 101, or the denial it describes, or 500 when it is invalid. */
  apply (decision: unknown): void {
    if (this.#state !== 'pending') {
      discardBody(decision)
      this.#owner.log.debug({ state: this.#state }, 'late handshake decision dropped')
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
    if (isAccept(decision)) {
      const protocol = this.#checkProtocol(decision.protocol)
      const headers = decision.headers === undefined ? NO_HEADERS : toHeaderPairs(decision.headers, ASCII_ONLY)
      this.#accept(protocol, headers)
    } else if (this.#closeFrame) {
      this.#refuse(prepareRefusal(decision, this.protocols, this.#settings.limits))
    } else {
      this.#deny(prepareDenial(decision, this.#settings.limits))
    }
  }

  /**
   * Answers with a denial the face has validated and framed itself (an ASGI
   * websocket.http.response.start, whose headers may declare the body's
   * length), or, under rejectVia 'close-frame', the refusal it stands for.
   * Throws the limits' error and changes nothing when it cannot be sent.
   */
  respond (denial: Denial): void {
    checkDenial(denial, this.#settings.limits)
    if (this.#closeFrame) this.#refuse(toRefusal(denial.status, '', denial.headers, this.protocols))
    else this.#deny(denial)
  }

  /**
   * Accepts for a route without a decision of its own (ws's rules choose the
   * subprotocol), through the same connection limits: a face calls it only
   * for such routes that have limits.
   */
  acceptAsIs (): void {
    try {
      this.#accept(undefined, undefined)
    } catch (err) {
      this.invalid(err)
    }
  }

  #accept (protocol: string | undefined, headers: HeaderPairs | undefined): void {
    const { limiter } = this.#settings
    const limits = limiter === undefined ? undefined : this.#owner.limits()
    if (limiter === undefined || limits === undefined || limits.length === 0) {
      this.#settle('accepted', 101)
      this.#owner.accept(protocol, headers, undefined)
      return
    }
    this.#state = 'admitting'
    // The count may take a round trip to the store: the deadline runs, and the
    // owner watches for the client leaving, as while the decision was pending.
    this.watch()
    // The owner may have found the client gone already.
    if (this.#state !== 'admitting') return
    limiter.keeper.acquire(limits).then((admission) => {
      try {
        this.#admitted(admission, limiter, protocol, headers)
      } catch (err) {
        // An owner's answer that threw (an app's verifyClient, a 'connection' listener).
        this.invalid(err)
      }
    }, (err: Error & { statusCode: number, code: string }) => {
      if (this.#state !== 'admitting') return
      this.#owner.log.error({ err }, 'handshake refused: the connection limit store is unavailable')
      this.#settle('unavailable', 503)
      this.onAbandoned?.(err)
      this.#owner.deny(errorDenial(err, RETRY_LATER))
    })
  }

  #admitted (admission: Admission, limiter: Limiter, protocol: string | undefined, headers: HeaderPairs | undefined): void {
    if (this.#state !== 'admitting') {
      if (admission.ok) limiter.keeper.release(admission.lease) // never rejects
      return
    }
    if (admission.ok) {
      if (admission.error !== undefined) this.#owner.log.warn({ err: admission.error }, 'connection admitted while the connection limit store is unavailable (onStoreError: allow)')
      this.#settle('accepted', 101)
      this.#owner.accept(protocol, headers, admission.lease)
      this.onAdmitted?.()
      return
    }
    this.#owner.log.debug({ key: admission.key }, 'handshake refused: connection limit reached')
    const err = new FST_WS_GATE_CONNECTION_LIMIT()
    this.#settle('limited', 429)
    this.onAbandoned?.(err)
    if (this.#closeFrame) this.#owner.refuse(toRefusal(429, err.message, limiter.retryAfter, this.protocols))
    else this.#owner.deny(errorDenial(err, limiter.retryAfter))
  }

  #deny (denial: Denial): void {
    this.#owner.log.debug({ statusCode: denial.status }, 'handshake rejected')
    this.#settle('denied', denial.status)
    this.#owner.deny(denial)
  }

  #refuse (refusal: Refusal): void {
    this.#owner.log.debug({ statusCode: refusal.status, closeCode: refusal.code }, 'handshake rejected with a close frame')
    this.#settle('refused', refusal.status)
    this.#owner.refuse(refusal)
  }

  /** The application failed before deciding: the face reports it. */
  fail (err: unknown): void {
    if (this.#state !== 'pending') {
      this.#owner.log.debug({ err, state: this.#state }, 'handshake handler failed after the handshake was settled')
      return
    }
    this.#settle('failed', undefined)
    this.#owner.fail(err)
  }

  /**
   * A programming error in the decision: the client gets a plain 500, the log
   * gets the details, once. When the answer has already started, the error is
   * logged and the connection cut instead.
   */
  invalid (err: unknown): void {
    if (this.#state !== 'pending') {
      this.#owner.log.error({ err, state: this.#state }, 'handshake failed after its answer was written')
      this.#owner.cut()
      return
    }
    this.#owner.log.error({ err }, 'invalid handshake decision')
    this.#settle('failed', 500)
    this.#owner.deny(errorDenial(INTERNAL_ERROR))
  }

  #checkProtocol (protocol: unknown): string | undefined {
    if (protocol === undefined) return undefined
    if (typeof protocol !== 'string' || !this.protocols.includes(protocol)) {
      throw new FST_WS_GATE_PROTOCOL_NOT_OFFERED(typeof protocol === 'string' ? JSON.stringify(protocol) : String(protocol), this.protocols.join(', ') || '(none)')
    }
    return protocol
  }

  /**
   * Starts the deadline, and asks the owner to notice the client leaving,
   * while the decision is pending. decide() does it for a promise; a face
   * that drives the handshake itself (ASGI) calls it before handing control
   * to the application.
   */
  watch (): void {
    if (this.#watched) return
    this.#watched = true
    const { timeout } = this.#settings
    if (timeout > 0) {
      this.#timer = setTimeout(() => { this.#timedOut() }, timeout)
      this.#timer.unref()
    }
    this.#owner.watch(this)
  }

  /** The owner saw the client leave while the decision was pending (it has dropped the connection). */
  gone (message = 'client closed the connection during the handshake'): void {
    this.#abort('gone', new FST_WS_GATE_CLIENT_CLOSED())
    this.#owner.log.debug({}, message)
  }

  #timedOut (): void {
    const { timeout } = this.#settings
    this.#owner.log.warn({ timeout }, 'handshake timed out')
    this.#unavailable('timed-out', new FST_WS_GATE_HANDSHAKE_TIMEOUT(timeout))
  }

  /** The server is closing: a pending handshake (one still in the registry) is answered 503 with Retry-After. */
  shutdown (): void {
    this.#owner.log.debug({}, 'handshake answered 503: the server is shutting down')
    this.#unavailable('shut-down', new FST_WS_GATE_SHUTTING_DOWN())
  }

  #unavailable (state: HandshakeState, err: Error & { statusCode: number, code: string }): void {
    this.#abort(state, err, 503)
    this.#owner.deny(errorDenial(err, RETRY_LATER))
  }

  #abort (state: HandshakeState, reason: Error, status?: number): void {
    this.#settle(state, status)
    this.#abortReason = reason
    this.#controller?.abort(reason)
    this.onAbandoned?.(reason)
  }

  #settle (state: HandshakeState, status: number | undefined): void {
    this.#state = state
    this.#leaveRegistry()
    clearTimeout(this.#timer)
    this.#owner.settled(state, status)
  }
}
