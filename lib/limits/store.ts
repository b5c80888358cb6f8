// The connection limit store: what every store does, so that others can be
// written (as @fastify/rate-limit's `store/` lets them be). Two ship with the
// gate: memoryLimitStore() (memory.ts, one process) and redisLimitStore()
// (redis.ts, a fleet sharing Redis or Valkey).
//
// The model. A store keeps, for each key (`user:42`, `ip:203.0.113.7`), the
// set of leases that hold it. A lease is one connection: a string unique
// across the fleet and over time, chosen by the node that holds it (see
// LeaseKeeper in leases.ts: a random node id and a counter). Each lease on a
// key has a deadline, `ttl` milliseconds after the last acquire() or
// refresh() that included it, on the store's clock (Redis's TIME for the
// Redis store, never a node's clock). Past its deadline a lease no longer
// counts, so the leases of a node that crashed free their places after `ttl`.
// A node keeps its live leases by refreshing them more often than `ttl`.
//
// Core-level: no Fastify, no ws, no node:http here or in any store.

/** One limit to take for a connection: at most `max` leases may hold `key` at once. */
export interface LimitRequest {
  /**
   * What is counted, as the route's `key` function returned it (`user:42`).
   * A store names its own storage from it (the Redis store prefixes it); the
   * same key from two routes is one count, on purpose.
   */
  readonly key: string
  /**
   * How many leases may hold `key` at once, this one included: an integer,
   * 0 or more (0 refuses every connection). Two limits on one key may give
   * different maxima; each acquire() is judged by its own.
   */
  readonly max: number
}

/**
 * What acquire() decided: the lease now holds every key, or it holds none of
 * them and `key` is the first key, in the order given, that was full.
 */
export type AcquireResult =
  | { readonly ok: true }
  | { readonly ok: false, readonly key: string }

/**
 * A connection limit store. Every method returns a promise that settles
 * within the store's own bound (the Redis store's `timeout`, 1 s by default),
 * whatever the state of its backend: a handshake waits on acquire(). A method
 * that cannot do its work rejects with an error whose `code` is
 * FST_WS_GATE_LIMIT_STORE_UNAVAILABLE (or FST_WS_GATE_LIMIT_STORE_CLOSED after
 * close()).
 */
export interface LimitStore {
  /**
   * Takes every limit for `lease`, atomically, or none of them. For each key,
   * the leases past their deadline are dropped first, then the key is full if
   * the leases other than `lease` number `max` or more. If no key is full,
   * `lease` is added to every key with the deadline `ttl` ms from now;
   * otherwise nothing changes and the result names the first full key.
   * Acquiring for a lease that already holds a key does not count it twice
   * (a retry is safe). An empty list is taken at once.
   *
   * A rejected acquire() may still have been applied (Redis ran it, the
   * answer came late): the store then releases `lease` itself, and a lease
   * it could not release expires after `ttl`, as no node refreshes it.
   *
   * @param limits the route's limits, in the route's order
   * @param lease the connection's lease, unique across the fleet and over time
   * @param ttl milliseconds, a positive integer: how long the lease counts unless refreshed
   */
  acquire(limits: readonly LimitRequest[], lease: string, ttl: number): Promise<AcquireResult>

  /**
   * Releases `lease` from each of `keys`: its places are free at once.
   * Releasing a lease that does not hold a key (never acquired, released
   * already, expired) does nothing.
   *
   * @param lease the lease acquire() took
   * @param keys the keys it took (the `key` of each limit given to acquire())
   */
  release(lease: string, keys: readonly string[]): Promise<void>

  /**
   * Re-establishes every lease given: each is added to each of its keys, or
   * kept there, with the deadline `ttl` ms from now, whether or not the key
   * is full. This is how a node keeps its live connections counted, and how
   * they are counted again after the store lost them (Redis restarted
   * empty, or the node could not reach it while `onStoreError: 'allow'`
   * admitted them). A key may then hold more leases than a `max`: new
   * acquires are refused until enough of them are released.
   *
   * @param leases each live lease of the node and the keys it holds
   * @param ttl milliseconds, a positive integer
   */
  refresh(leases: ReadonlyMap<string, readonly string[]>, ttl: number): Promise<void>

  /**
   * Stops the store: every later call rejects with
   * FST_WS_GATE_LIMIT_STORE_CLOSED. It frees what the store itself holds (the
   * in-process store's counts), not what it was given: the Redis store leaves
   * its client open, for the application to quit.
   */
  close(): Promise<void>
}
