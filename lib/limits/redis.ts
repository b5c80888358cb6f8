// redisLimitStore(): the connection limit store of a fleet, on Redis or Valkey,
// through the application's own ioredis-compatible client (ioredis, iovalkey).
// The package does not depend on a client: the one it is given is typed by
// the few members used here.
//
// The design, sound under crashes and clocks:
// - One sorted set per key, one member per lease, its score the lease's
//   deadline in milliseconds on Redis's clock: every script reads Redis TIME,
//   never a node's clock, so nodes whose clocks disagree still agree on
//   which leases have expired.
// - acquire(): one Lua script for all of a route's limits. For each key it
//   drops the expired members (ZREMRANGEBYSCORE), counts (ZCARD), and compares
//   with the max; only if every key has room does it add the lease to each
//   (ZADD) and push the key's expiry to its latest deadline (PEXPIREAT), so
//   that keys nobody holds any more disappear. Otherwise it adds nothing and
//   answers the index of the first full key. A script runs alone, so the
//   count is exact however many nodes acquire at once.
// - refresh(): one script call per 500 keys, all sent at once (pipelined):
//   ZADD of each lease with a new deadline. This also puts back leases Redis
//   lost (restarted empty, failed over to a replica that had not seen them).
// - release(): one script call, ZREM of the lease from each of its keys.
//
// Redis Cluster: every key of a store is named `{<prefix>}:<key>`. The braces
// make the prefix the key's hash tag, so every key of the store hashes to one
// slot: a route's keys always live in one slot, the acquire script is atomic
// on Cluster as on one server, and no call ever fails with CROSSSLOT. The
// cost: the limits of one store live on one shard (its primary serves every
// acquire, release and refresh), which does not grow with the cluster. A
// fleet whose limits outgrow one shard can split them across stores with
// different prefixes, one per route or per kind of key, as long as the keys of
// one route are in one store. (With one slot per key instead, a route's
// limits could not be taken in one script; taking them one key at a time and
// undoing on refusal would keep the counts exact, but refuse spuriously while
// another connection's partial acquire is being undone.)
//
// Fail fast: every call is bounded by `timeout` (1 s by default) whatever the
// client's settings (ioredis queues commands while offline, by default for as
// long as it takes to reconnect), and a call made while the client says it is
// not connected fails at once without queueing anything. An acquire that
// failed or timed out may still run later (it was queued, or its answer was
// lost): the store then sends a release of the lease at once, which the
// client sends after the acquire, on the same connection, so the lease does
// not stay; if that release is lost too, the lease expires after the ttl, as
// nobody refreshes it.
import { createHash } from 'node:crypto'
import { FST_WS_GATE_INVALID_OPTION, FST_WS_GATE_LIMIT_STORE_CLOSED, FST_WS_GATE_LIMIT_STORE_UNAVAILABLE } from '../errors.js'
import type { AcquireResult, LimitStore } from './store.js'

/**
 * The members of an ioredis-compatible client the store uses: ioredis's
 * `Redis` or `Cluster`, iovalkey's, or anything with the same methods.
 */
export interface RedisLimitClient {
  /** EVALSHA: runs a script Redis has cached, by its SHA-1 digest. */
  evalsha(sha1: string, numkeys: number, ...args: Array<string | number>): Promise<unknown>
  /** EVAL: runs (and caches) a script, when EVALSHA answered NOSCRIPT. */
  eval(script: string, numkeys: number, ...args: Array<string | number>): Promise<unknown>
  /**
   * ioredis's connection state. When it is 'reconnecting', 'close' or 'end',
   * calls fail at once instead of waiting in the client's offline queue.
   */
  readonly status?: string
}

/** The options of redisLimitStore(). */
export interface RedisLimitStoreOptions {
  /** The client, connected (or connecting) to Redis or Valkey. The store never quits it. */
  client: RedisLimitClient
  /**
   * Names the store's keys: `{<prefix>}:<key>`, the prefix being the Redis
   * Cluster hash tag of every key of the store. Not empty, no braces;
   * 'fastify-ws-gate' by default.
   */
  prefix?: string
  /**
   * Milliseconds each call may take before it rejects with
   * FST_WS_GATE_LIMIT_STORE_UNAVAILABLE: 1000 by default.
   */
  timeout?: number
}

// Redis before 5 replicates a script by its text, which TIME forbids; these
// scripts ask for their effects to be replicated instead (the default since
// Redis 5, and the only way since 7, where this call does nothing).
const PREAMBLE = `
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function expire (key)
  redis.call('PEXPIREAT', key, redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
end
`

// KEYS: the limits' keys. ARGV: the lease, the ttl, then each key's max.
// Answers 0 when the lease took every key, else the index (from 1) of the
// first full key.
const ACQUIRE = PREAMBLE + `
local lease = ARGV[1]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local held = redis.call('ZCARD', key)
  if redis.call('ZSCORE', key, lease) then held = held - 1 end
  if held >= tonumber(ARGV[i + 2]) then return i end
end
local deadline = now + tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, deadline, lease)
  expire(key)
end
return 0
`

// KEYS: the keys of every lease, lease after lease. ARGV: the ttl, then for
// each lease its id and how many of KEYS are its keys.
const REFRESH = PREAMBLE + `
local deadline = now + tonumber(ARGV[1])
local k = 1
for j = 2, #ARGV, 2 do
  for _ = 1, tonumber(ARGV[j + 1]) do
    redis.call('ZADD', KEYS[k], deadline, ARGV[j])
    k = k + 1
  end
end
local seen = {}
for _, key in ipairs(KEYS) do
  if not seen[key] then
    seen[key] = true
    expire(key)
  end
end
return 0
`

// KEYS: the lease's keys. ARGV: the lease.
const RELEASE = `
for _, key in ipairs(KEYS) do redis.call('ZREM', key, ARGV[1]) end
return 0
`

interface Script {
  lua: string
  sha1: string
}

function script (lua: string): Script {
  return { lua, sha1: createHash('sha1').update(lua).digest('hex') }
}

const SCRIPTS = { acquire: script(ACQUIRE), refresh: script(REFRESH), release: script(RELEASE) }

// How many keys one refresh script call carries, so that no script holds
// Redis for long (each call is a fraction of a millisecond).
const REFRESH_KEYS_PER_CALL = 500

// ioredis's states in which a command would wait in the offline queue.
const DISCONNECTED = new Set(['reconnecting', 'close', 'end'])

const OK: AcquireResult = Object.freeze({ ok: true })

/** A connection limit store on Redis or Valkey, shared by every node of a fleet. */
export function redisLimitStore (options: RedisLimitStoreOptions): LimitStore {
  const { client, prefix = 'fastify-ws-gate', timeout = 1000 } = options ?? {} as Partial<RedisLimitStoreOptions>
  if (typeof client?.evalsha !== 'function' || typeof client?.eval !== 'function') {
    throw new FST_WS_GATE_INVALID_OPTION('client of redisLimitStore()', 'must be an ioredis-compatible client (ioredis, iovalkey), with evalsha() and eval()')
  }
  if (typeof prefix !== 'string' || prefix === '' || /[{}]/.test(prefix)) {
    throw new FST_WS_GATE_INVALID_OPTION('prefix of redisLimitStore()', `must be a non-empty string without braces (it becomes the keys' hash tag), got ${String(prefix)}`)
  }
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 2 ** 31 - 1) {
    throw new FST_WS_GATE_INVALID_OPTION('timeout of redisLimitStore()', `must be an integer number of milliseconds from 1 to ${2 ** 31 - 1}, got ${String(timeout)}`)
  }
  const name = (key: string): string => `{${prefix}}:${key}`
  let closed = false

  function check (): void {
    if (closed) throw new FST_WS_GATE_LIMIT_STORE_CLOSED()
  }

  // Runs a script by its digest, and by its text when Redis does not have
  // it (a restart, SCRIPT FLUSH, a replica promoted).
  async function run (which: Script, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    try {
      return await client.evalsha(which.sha1, keys.length, ...keys, ...args)
    } catch (err) {
      if (!String(err).includes('NOSCRIPT')) throw err
      return await client.eval(which.lua, keys.length, ...keys, ...args)
    }
  }

  // The work, bounded by `timeout`, its failures coded errors; refused at
  // once when the client says it is not connected.
  function bounded<T> (call: string, work: () => Promise<T>): Promise<T> {
    if (client.status !== undefined && DISCONNECTED.has(client.status)) {
      return Promise.reject(new FST_WS_GATE_LIMIT_STORE_UNAVAILABLE(`${call}: the Redis client is ${client.status}`))
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new FST_WS_GATE_LIMIT_STORE_UNAVAILABLE(`${call}: Redis did not answer within ${timeout} ms`))
      }, timeout)
      work().then((value) => {
        clearTimeout(timer)
        resolve(value)
      }, (err: unknown) => {
        clearTimeout(timer)
        reject(new FST_WS_GATE_LIMIT_STORE_UNAVAILABLE(`${call}: ${String(err)}`, { cause: err }))
      })
    })
  }

  return {
    async acquire (limits, lease, ttl) {
      check()
      if (limits.length === 0) return OK
      const keys = limits.map(({ key }) => name(key))
      const args = [lease, ttl, ...limits.map(({ max }) => max)]
      let sent = false
      let reply: unknown
      try {
        reply = await bounded('acquire', () => {
          sent = true
          return run(SCRIPTS.acquire, keys, args)
        })
      } catch (err) {
        // Sent, the acquire may yet run, or have run: take the lease back,
        // after it on the same connection, unbounded (a lease this misses
        // expires after the ttl).
        if (sent) run(SCRIPTS.release, keys, [lease]).catch(() => {})
        throw err
      }
      return reply === 0 ? OK : { ok: false, key: limits[Number(reply) - 1].key }
    },

    async release (lease, released) {
      check()
      const keys = released.map(name)
      await bounded('release', () => run(SCRIPTS.release, keys, [lease]))
    },

    async refresh (leases, ttl) {
      check()
      // Lease after lease, cut into calls of at most REFRESH_KEYS_PER_CALL
      // keys, unless one lease has more (a lease's keys stay in one call).
      const calls: Array<{ keys: string[], args: Array<string | number> }> = []
      let call = { keys: [] as string[], args: [ttl] as Array<string | number> }
      for (const [lease, held] of leases) {
        if (held.length === 0) continue
        if (call.keys.length > 0 && call.keys.length + held.length > REFRESH_KEYS_PER_CALL) {
          calls.push(call)
          call = { keys: [], args: [ttl] }
        }
        for (const key of held) call.keys.push(name(key))
        call.args.push(lease, held.length)
      }
      if (call.keys.length > 0) calls.push(call)
      if (calls.length === 0) return
      await bounded('refresh', () => Promise.all(calls.map(({ keys, args }) => run(SCRIPTS.refresh, keys, args))))
    },

    async close () {
      closed = true
    }
  }
}
