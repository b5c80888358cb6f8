// LeaseKeeper: one node's connection leases, kept in a LimitStore.
//
// A face (the Fastify plugin) makes one keeper per app. For each upgrade that
// was accepted, it asks acquire() with the route's limits before the 101, and
// calls release() when the connection closes, however it closes. The keeper
// does the rest:
// - It names the leases: this node's random id and a counter, unique across
//   the fleet and over restarts.
// - It refreshes all its live leases in one store.refresh() every leaseTtl/3,
//   so that each is refreshed about three times before it could expire, and
//   a node that crashed loses its leases after leaseTtl. The refresh also puts
//   back leases the store lost (Redis restarted empty).
// - It knows, for each lease, the last time the store proved it: when the
//   acquire() or refresh() that last succeeded for it was sent (the store
//   computed its deadline later, so the deadline is at least leaseTtl after
//   that). A lease whose proof is about to run out (leaseTtl minus 5%, for
//   the drift between the node's clock and the store's and the time a close
//   takes) is lost: another node may take its place as soon as it expires.
//   The keeper drops it, releases it in the store (a refresh in flight may
//   still land), and calls onLost(lease): the face closes that connection
//   with 1013 (Try Again Later), so that the fleet never stays above a limit.
//   This happens only under onStoreError: 'deny'. Under 'allow', connections
//   stay open while the store is out of reach, and the refreshes count them
//   again when it is back.
//
// Core-level: no Fastify, no ws, no node:http.
import { randomBytes } from 'node:crypto'
import { FST_WS_GATE_INVALID_OPTION, FST_WS_GATE_LIMIT_STORE_CLOSED } from '../errors.js'
import type { LimitRequest, LimitStore } from './store.js'

/** What to do when the store cannot say whether a connection may open. */
export type OnStoreError = 'deny' | 'allow'

/**
 * The clock and timers the keeper runs on: the process's by default. Tests
 * give a fake one, to run hours of refreshes and expiries in no time.
 */
export interface Clock {
  /** Milliseconds; only differences matter. */
  now(): number
  /** Runs `fn` once after `ms` milliseconds; must not keep the process alive. */
  setTimeout(fn: () => void, ms: number): unknown
  /** Cancels what setTimeout() returned. */
  clearTimeout(timer: unknown): void
}

/** The options of a LeaseKeeper. */
export interface LeaseKeeperOptions {
  /** Where the counts are kept. The keeper never closes it. */
  store: LimitStore
  /**
   * Milliseconds, an integer of 3 or more: a lease that is not refreshed for
   * this long expires. The keeper refreshes every leaseTtl/3.
   */
  leaseTtl: number
  /**
   * 'deny' (the default): acquire() rejects when the store fails, and leases
   * the store can no longer prove are lost. 'allow': acquire() admits when
   * the store fails, and no lease is ever lost.
   */
  onStoreError?: OnStoreError
  /** Called with each lease the keeper gave up (it was not proved for leaseTtl): close its connection. */
  onLost?: (lease: string) => void
  /** Called with each failure that is nobody's answer: a refresh or release that failed, an onLost that threw. */
  onError?: (err: unknown) => void
  /** This node's id, the first part of every lease: 12 random base64url characters by default. */
  node?: string
  /** The clock: the process's by default. */
  clock?: Clock
}

/**
 * What acquire() decided. `ok`: the connection may open, and `lease` is to be
 * released when it closes; `error` is set when the store failed and
 * `onStoreError: 'allow'` admitted it anyway (log it). Otherwise the
 * connection is over the limit on `key` (answer 429).
 */
export type Admission =
  | { readonly ok: true, readonly lease: string, readonly error?: Error }
  | { readonly ok: false, readonly key: string }

interface Held {
  readonly keys: readonly string[]
  /** When the last acquire or refresh that succeeded for the lease was sent. */
  since: number
}

const PROCESS_CLOCK: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (timer) => { clearTimeout(timer as NodeJS.Timeout) }
}

// setTimeout's limit: a longer delay fires at once.
const MAX_TTL = 2 ** 31 - 1

/** One node's connection leases, refreshed, and given up when they can no longer be proved. */
export class LeaseKeeper {
  /** This node's id, the first part of each of its leases. */
  readonly node: string
  readonly #store: LimitStore
  readonly #ttl: number
  readonly #interval: number
  /** How long a proof lasts: leaseTtl less 5%. */
  readonly #proof: number
  readonly #allow: boolean
  readonly #onLost: (lease: string) => void
  readonly #onError: (err: unknown) => void
  readonly #clock: Clock
  readonly #leases = new Map<string, Held>()
  #counter = 0
  #closed = false
  #refreshTimer: unknown
  #sweepTimer: unknown = undefined

  constructor (options: LeaseKeeperOptions) {
    const { store, leaseTtl, onStoreError = 'deny', onLost = () => {}, onError = () => {}, node = randomBytes(9).toString('base64url'), clock = PROCESS_CLOCK } = options
    if (!Number.isInteger(leaseTtl) || leaseTtl < 3 || leaseTtl > MAX_TTL) {
      throw new FST_WS_GATE_INVALID_OPTION('connectionLimits.leaseTtl', `must be an integer number of milliseconds from 3 to ${MAX_TTL}, got ${String(leaseTtl)}`)
    }
    if (onStoreError !== 'deny' && onStoreError !== 'allow') {
      throw new FST_WS_GATE_INVALID_OPTION('connectionLimits.onStoreError', `must be 'deny' or 'allow', got ${String(onStoreError)}`)
    }
    this.node = node
    this.#store = store
    this.#ttl = leaseTtl
    this.#interval = Math.floor(leaseTtl / 3)
    this.#proof = leaseTtl - leaseTtl / 20
    this.#allow = onStoreError === 'allow'
    this.#onLost = onLost
    this.#onError = onError
    this.#clock = clock
    this.#refreshTimer = clock.setTimeout(this.#tick, this.#interval)
  }

  /** How many leases this node holds: its open connections that count against a limit. */
  get size (): number {
    return this.#leases.size
  }

  /**
   * Takes the limits for one connection, all or none. Resolves with the
   * lease, or with the key that was full; rejects (under 'deny') with the
   * store's error when it could not tell, within the store's bound. With no
   * limits (every key was skipped), admits without asking the store.
   *
   * If the connection goes away while this is pending, release the lease it
   * resolves with.
   */
  async acquire (limits: readonly LimitRequest[]): Promise<Admission> {
    if (this.#closed) throw new FST_WS_GATE_LIMIT_STORE_CLOSED()
    const lease = `${this.node}:${(this.#counter++).toString(36)}`
    if (limits.length === 0) return { ok: true, lease }
    const keys = limits.map(({ key }) => key)
    const since = this.#clock.now()
    let error: Error | undefined
    try {
      const result = await this.#store.acquire(limits, lease, this.#ttl)
      if (!result.ok) return result
    } catch (err) {
      if (!this.#allow || this.#closed) throw err
      error = err as Error
    }
    if (this.#closed) {
      this.#drop(lease, keys)
      throw new FST_WS_GATE_LIMIT_STORE_CLOSED()
    }
    this.#leases.set(lease, { keys, since })
    if (this.#sweepTimer === undefined && !this.#allow) this.#sweepIn(since + this.#proof - this.#clock.now())
    return error === undefined ? { ok: true, lease } : { ok: true, lease, error }
  }

  /**
   * Releases a lease: its connection closed. Releasing a lease this keeper
   * does not hold (released already, lost, or from an admission without
   * limits) does nothing. Never rejects: a store failure goes to onError
   * (the lease then expires after leaseTtl, as nobody refreshes it).
   */
  async release (lease: string): Promise<void> {
    const held = this.#leases.get(lease)
    if (held === undefined) return
    this.#leases.delete(lease)
    await this.#drop(lease, held.keys)
  }

  /**
   * Refreshes every lease held, in one store.refresh(). The keeper does this
   * every leaseTtl/3 by itself; calling it sooner is harmless. Never
   * rejects: a failure goes to onError, and the leases keep their last proof.
   */
  async refresh (): Promise<void> {
    if (this.#leases.size === 0) return
    const sent = this.#clock.now()
    const leases = new Map<string, readonly string[]>()
    for (const [lease, { keys }] of this.#leases) leases.set(lease, keys)
    try {
      await this.#store.refresh(leases, this.#ttl)
    } catch (err) {
      this.#onError(err)
      return
    }
    for (const lease of leases.keys()) {
      const held = this.#leases.get(lease)
      if (held !== undefined && held.since < sent) held.since = sent
    }
  }

  /**
   * Stops refreshing and releases every lease held. Later acquire() calls
   * reject with FST_WS_GATE_LIMIT_STORE_CLOSED; one pending now releases
   * the lease it gets and rejects so too. The store stays open.
   */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#clock.clearTimeout(this.#refreshTimer)
    this.#clock.clearTimeout(this.#sweepTimer)
    const drops: Array<Promise<void>> = []
    for (const [lease, { keys }] of this.#leases) drops.push(this.#drop(lease, keys))
    this.#leases.clear()
    await Promise.all(drops)
  }

  #drop (lease: string, keys: readonly string[]): Promise<void> {
    return this.#store.release(lease, keys).catch(this.#onError)
  }

  #tick = (): void => {
    this.#refreshTimer = this.#clock.setTimeout(this.#tick, this.#interval)
    this.refresh().catch(this.#onError)
  }

  #sweepIn (ms: number): void {
    this.#sweepTimer = this.#clock.setTimeout(this.#sweep, ms)
  }

  // Gives up every lease whose proof ran out, and comes back when the next
  // one will.
  #sweep = (): void => {
    this.#sweepTimer = undefined
    const now = this.#clock.now()
    let next = Infinity
    const lost: string[] = []
    for (const [lease, held] of this.#leases) {
      const end = held.since + this.#proof
      if (end <= now) {
        this.#leases.delete(lease)
        this.#drop(lease, held.keys)
        lost.push(lease)
      } else if (end < next) {
        next = end
      }
    }
    if (next !== Infinity) this.#sweepIn(next - now)
    for (const lease of lost) {
      try {
        this.#onLost(lease)
      } catch (err) {
        this.#onError(err)
      }
    }
  }
}
