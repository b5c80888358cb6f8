// Connection limits as the Fastify face sees them: the plugin's
// `connectionLimits` option, a route's `connectionLimit` rules, and this
// node's open connections by lease, so that a lease given up (the store could
// no longer prove it) closes its connection, and a connection that closes
// releases its lease, however it closes.
import type { Duplex } from 'node:stream'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { WebSocket } from 'ws'
import { FST_WS_GATE_INVALID_OPTION, FST_WS_GATE_INVALID_ROUTE_OPTION } from '../errors.js'
import { describe } from '../core/denial.js'
import type { Limiter } from '../core/handshake.js'
import { LeaseKeeper } from '../limits/leases.js'
import { memoryLimitStore } from '../limits/memory.js'
import type { LimitRequest, LimitStore } from '../limits/store.js'
import type { ConnectionLimit, ConnectionLimitsOptions } from './types.js'

const DEFAULT_LEASE_TTL = 15_000
const DEFAULT_RETRY_AFTER = 5
// RFC 6455 §7.4.1: 1013 Try Again Later. The lease behind the connection
// could not be proved for leaseTtl: another node may have its place.
const LEASE_LOST = 1013

/** A route's limit, checked: its key function, its max, and what its keys are counted under. */
interface Rule {
  readonly key: (request: FastifyRequest) => string | undefined
  readonly max: number
  /** The route's URL and a space, before each key; empty for a shared limit. */
  readonly scope: string
}

export type Rules = readonly Rule[]

/** This node's leases, and the connections that hold them. */
export class Leases implements Limiter {
  readonly keeper: LeaseKeeper
  readonly retryAfter: Array<[string, string]>
  readonly #open = new Map<string, WebSocket>()
  readonly #ownStore: LimitStore | undefined

  constructor (options: ConnectionLimitsOptions, log: FastifyBaseLogger) {
    const { store, leaseTtl = DEFAULT_LEASE_TTL, onStoreError = 'deny', retryAfter = DEFAULT_RETRY_AFTER } = options
    if (store !== undefined && !isStore(store)) {
      throw new FST_WS_GATE_INVALID_OPTION('connectionLimits.store', 'must be a connection limit store (acquire, release, refresh and close): memoryLimitStore(), redisLimitStore() or your own')
    }
    if (!Number.isInteger(retryAfter) || retryAfter < 0) {
      throw new FST_WS_GATE_INVALID_OPTION('connectionLimits.retryAfter', `must be a whole number of seconds, 0 or more, got ${String(retryAfter)}`)
    }
    this.#ownStore = store === undefined ? memoryLimitStore() : undefined
    this.retryAfter = [['Retry-After', String(retryAfter)]]
    this.keeper = new LeaseKeeper({
      store: store ?? this.#ownStore as LimitStore,
      leaseTtl,
      onStoreError,
      onLost: (lease) => {
        log.warn({ lease }, 'connection closed: its connection limit lease could not be confirmed')
        this.#open.get(lease)?.close(LEASE_LOST, 'Connection limit could not be confirmed')
      },
      onError: (err) => { log.error({ err }, 'connection limit store failure') }
    })
  }

  /** The connection of `lease` is open on `socket`: its lease goes when the socket closes. */
  hold (lease: string, socket: Duplex): void {
    socket.once('close', () => { this.release(lease) })
  }

  /** The WebSocket behind `lease`, to close if the lease is lost. */
  opened (lease: string, ws: WebSocket): void {
    this.#open.set(lease, ws)
  }

  release (lease: string): void {
    this.#open.delete(lease)
    this.keeper.release(lease) // never rejects: a failure goes to onError
  }

  async close (): Promise<void> {
    await this.keeper.close()
    await this.#ownStore?.close()
  }
}

function isStore (store: unknown): store is LimitStore {
  const candidate = store as Partial<Record<keyof LimitStore, unknown>> | null
  return typeof candidate === 'object' && candidate !== null &&
    typeof candidate.acquire === 'function' && typeof candidate.release === 'function' &&
    typeof candidate.refresh === 'function' && typeof candidate.close === 'function'
}

/**
 * A route's `connectionLimit` option, checked at startup: one limit or a
 * list. A key counts for its route only (it is counted under the route's
 * URL), unless the limit is `shared`: then every route that gives the same
 * key counts it together.
 */
export function checkRules (option: unknown, where: string, url: string): Rules {
  const limits = Array.isArray(option) ? option as unknown[] : [option]
  if (limits.length === 0) throw new FST_WS_GATE_INVALID_ROUTE_OPTION('connectionLimit', where, 'must hold at least one limit')
  return limits.map((limit) => {
    const { key, max, shared } = (limit ?? {}) as Partial<ConnectionLimit>
    if (typeof key !== 'function') throw new FST_WS_GATE_INVALID_ROUTE_OPTION('connectionLimit', where, 'each limit needs a key function')
    if (!Number.isInteger(max) || (max as number) < 0) throw new FST_WS_GATE_INVALID_ROUTE_OPTION('connectionLimit', where, `max must be a whole number, 0 or more, got ${String(max)}`)
    if (shared !== undefined && typeof shared !== 'boolean') throw new FST_WS_GATE_INVALID_ROUTE_OPTION('connectionLimit', where, 'shared must be a boolean')
    return { key, max: max as number, scope: shared === true ? '' : `${url} ` }
  })
}

/** The limits one connection takes: each rule's key for this request, skipping those that gave undefined. */
export function limitsOf (rules: Rules, request: FastifyRequest): LimitRequest[] {
  const limits: LimitRequest[] = []
  for (const { key, max, scope } of rules) {
    const value: unknown = key(request)
    if (value === undefined) continue
    if (typeof value !== 'string') throw new TypeError(`a connectionLimit key must return a string or undefined, got ${describe(value)}`)
    limits.push({ key: scope + value, max })
  }
  return limits
}
