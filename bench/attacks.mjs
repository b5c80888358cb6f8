// Hostile clients (issue 17) against fastify-ws-gate, @fastify/websocket alone and a bare ws server, each in its own process: what the client got, server CPU, memory, health and error logs per attack.
//
// Every attack starts fresh servers (bench/servers/attack-*.mjs, defaults of
// each library, started through bench/harness.mjs), speaks raw bytes over
// `net` on 127.0.0.1, and is bounded in count and time. Prints a markdown
// table and writes bench/results/attacks-<date>.json.
//
//   npm run bench:attacks                   every attack, about 4-5 minutes
//   node bench/attacks.mjs --quick          small counts and short bounds (seconds)
//   flags: --attack a,b   only these (protocols, headers, slowloris, flood, early-frames, ignored-close, malformed, ungated, shutdown)
//          --before DIR   also fastify-ws-gate as built in another checkout (its dist/), in the protocols and headers attacks
//          --gate DIR     fastify-ws-gate as built in another checkout instead of this one's dist/ (a committed build, while lib/ is being edited)
//          --out FILE
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { cpuTime, LOAD_CORE, pin, startServer, writeResults } from './harness.mjs'
import { median } from './stats.mjs'

// The clients run on the load generator's core, the servers on theirs (as in
// npm run bench): this script runs itself again under taskset.
if (pin && process.env.WS_GATE_ATTACKS_PINNED === undefined) {
  const child = spawn('taskset', ['-c', LOAD_CORE, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, WS_GATE_ATTACKS_PINNED: '1' }
  })
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
  const [code] = await once(child, 'exit')
  process.exit(code ?? 1)
}

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    attack: { type: 'string' },
    before: { type: 'string' },
    gate: { type: 'string' },
    out: { type: 'string' }
  }
})
const quick = flags.quick

// Counts and bounds: [full run, --quick].
const SIZES = {
  // Sec-WebSocket-Protocol tokens (and X-Junk-i headers, 0 left out): each
  // request sent `upgrades` times in each of `rounds` rounds, after `warmup`.
  tokens: [[0, 100, 1000, 3000], [100, 3000]],
  upgrades: [300, 5],
  inFlight: [8, 2],
  rounds: [3, 1],
  warmup: [50, 2],
  // Node's headersTimeout (60 s) is checked every 30 s: 95 s sees it act.
  slowloris: [200, 20],
  slowlorisEveryMs: [1000, 100],
  slowlorisMs: [95_000, 2000],
  // Past the gate's maxPendingHandshakes (10,000); held past its handshakeTimeout (10 s).
  flood: [11_000, 200],
  floodWaitMs: [12_000, 1000],
  floodCap: [1000, 50],
  earlyFrames: [20, 2],
  earlyBytes: [2 ** 20, 2 ** 20],
  earlyWaitMs: [3000, 1000],
  ignoredCloseMs: [3000, 500],
  ignoredCloseMaxBytes: [2 * 2 ** 30, 64 * 2 ** 20],
  // ws's own close timeout is 30 s.
  shutdownMs: [35_000, 5000]
}
const config = Object.fromEntries(Object.entries(SIZES).map(([name, [full, small]]) => [name, quick ? small : full]))

const moduleIn = (dir) => ({ WS_GATE_MODULE: pathToFileURL(resolve(dir, 'dist/index.js')).href })
const SERVERS = [
  { key: 'gate', name: 'fastify-ws-gate', file: 'servers/attack-gate.mjs', env: flags.gate === undefined ? undefined : moduleIn(flags.gate) },
  { key: 'fws', name: '@fastify/websocket alone', file: 'servers/attack-fastify-websocket.mjs' },
  { key: 'ws', name: 'ws alone', file: 'servers/attack-ws.mjs' }
]
const BEFORE = flags.before === undefined
  ? undefined
  : { key: 'before', name: 'fastify-ws-gate before 9019197', file: 'servers/attack-gate.mjs', env: moduleIn(flags.before) }
const COLUMNS = BEFORE === undefined ? SERVERS : [SERVERS[0], BEFORE, ...SERVERS.slice(1)]

const ATTACKS = {
  protocols: protocolsAttack,
  headers: headersAttack,
  slowloris: slowlorisAttack,
  flood: floodAttack,
  'early-frames': earlyFramesAttack,
  'ignored-close': ignoredCloseAttack,
  malformed: malformedAttack,
  ungated: ungatedAttack,
  shutdown: shutdownAttack
}
const chosen = flags.attack === undefined ? Object.keys(ATTACKS) : flags.attack.split(',')
for (const name of chosen) {
  if (!(name in ATTACKS)) throw new Error(`--attack: expected a list of ${Object.keys(ATTACKS).join(', ')}, got ${flags.attack}`)
}

const now = () => Number(process.hrtime.bigint()) / 1e6
const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const MiB = 2 ** 20
const mib = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`
const cpuSeconds = (figures) => (figures.cpuMs === null ? '?' : `${(figures.cpuMs / 1000).toFixed(2)} s`)

// ---------------------------------------------------------------------------
// Requests and frames, as bytes.

const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
const UPGRADE = ['Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13']
const rawRequest = (line, headers) => Buffer.from(`${line}\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1')
const upgrade = (path, extra = []) => rawRequest(`GET ${path} HTTP/1.1`, [...UPGRADE, ...extra])

/** A client's binary frame of `size` bytes, masked with a zero key (legal, and the payload needs no masking work). */
function binaryFrame (size) {
  const header = size < 126 ? Buffer.from([0x82, 0x80 | size]) : size < 65536 ? Buffer.alloc(4) : Buffer.alloc(10)
  if (size >= 126 && size < 65536) {
    header[0] = 0x82
    header[1] = 0x80 | 126
    header.writeUInt16BE(size, 2)
  } else if (size >= 65536) {
    header[0] = 0x82
    header[1] = 0x80 | 127
    header.writeBigUInt64BE(BigInt(size), 2)
  }
  return Buffer.concat([header, Buffer.alloc(4), Buffer.alloc(size, 0x61)])
}

// ---------------------------------------------------------------------------
// A raw client connection: the response head, then the server's frames (close
// codes kept), and when and how the connection ended.

const HEAD_END = Buffer.from('\r\n\r\n')

class Conn {
  constructor (port, bytes) {
    this.started = now()
    this.status = null // the status line's code, once the head is in
    this.statusLine = null
    this.closedAt = null
    this.error = null
    this.closeCode = null // of the first close frame after a 101
    this.closeFrameAt = null
    this.body = '' // the first KiB after a head other than 101
    this.received = 0
    this.head = Buffer.alloc(0)
    this.frames = null
    this.waiters = []
    this.socket = connect(port, '127.0.0.1')
    this.socket.on('error', (err) => { this.error = err.code ?? err.message })
    this.socket.on('close', () => {
      this.closedAt = now()
      this.wake()
    })
    this.socket.on('data', (chunk) => this.onData(chunk))
    if (bytes !== undefined) this.socket.write(bytes)
  }

  onData (chunk) {
    this.received += chunk.length
    if (this.status === null) {
      // Heads are short; a server that never ends one is cut at 64 KiB.
      this.head = this.head.length === 0 ? chunk : Buffer.concat([this.head, chunk])
      const end = this.head.indexOf(HEAD_END)
      if (end === -1) {
        if (this.head.length > 65536) this.head = this.head.subarray(0, 65536)
        return
      }
      this.statusLine = this.head.subarray(0, this.head.indexOf('\r\n')).toString('latin1')
      this.status = Number(this.statusLine.split(' ')[1]) || this.statusLine
      const rest = this.head.subarray(end + 4)
      this.head = Buffer.alloc(0)
      this.wake()
      if (this.status !== 101) {
        this.body = rest.subarray(0, 1024).toString('latin1')
        return
      }
      this.frames = Buffer.alloc(0)
      chunk = rest
    }
    if (this.status !== 101) {
      if (this.body.length < 1024) this.body += chunk.subarray(0, 1024 - this.body.length).toString('latin1')
      return
    }
    if (this.frames === null || this.closeCode !== null) return
    this.frames = Buffer.concat([this.frames, chunk])
    // Server frames are unmasked; only the first close frame is kept.
    while (this.frames.length >= 2) {
      const opcode = this.frames[0] & 0x0f
      let length = this.frames[1] & 0x7f
      let offset = 2
      if (length === 126) {
        if (this.frames.length < 4) return
        length = this.frames.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (this.frames.length < 10) return
        length = Number(this.frames.readBigUInt64BE(2))
        offset = 10
      }
      if (this.frames.length < offset + length) return
      if (opcode === 8) {
        this.closeCode = length >= 2 ? this.frames.readUInt16BE(offset) : 1005
        this.closeFrameAt = now()
        this.frames = null
        this.wake()
        return
      }
      this.frames = this.frames.subarray(offset + length)
    }
  }

  wake () {
    for (const waiter of this.waiters.splice(0)) waiter()
  }

  /** Resolves once `done()` holds or `ms` passes. */
  until (done, ms) {
    if (done()) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(finish, ms)
      const check = () => (done() ? finish() : this.waiters.push(check))
      function finish () {
        clearTimeout(timer)
        resolve()
      }
      this.waiters.push(check)
    })
  }

  answered (ms) { return this.until(() => this.status !== null || this.closedAt !== null, ms) }

  /**
   * What the client got: a status code (with the error code of a JSON body
   * that has one), or 'closed' / a socket error code / 'none' (nothing yet).
   */
  get outcome () {
    if (this.status !== null) {
      const code = /"code":"([A-Z_]+)"/.exec(this.body)?.[1]
      return code === undefined ? String(this.status) : `${this.status} ${code}`
    }
    if (this.error !== null) return this.error
    return this.closedAt !== null ? 'closed' : 'none'
  }

  destroy () { this.socket.destroy() }
}

/** One request on its own connection: what the client got within `ms` (a denial's body too, up to its close). */
async function exchange (port, bytes, ms = 2000) {
  const conn = new Conn(port, bytes)
  await conn.until(() => conn.status === 101 || conn.closedAt !== null, ms)
  conn.destroy()
  return conn.outcome
}

const tally = (outcomes) => {
  const counts = {}
  for (const outcome of outcomes) counts[outcome] = (counts[outcome] ?? 0) + 1
  return counts
}
const formatTally = (counts) => Object.entries(counts).map(([outcome, n]) => `${outcome} ×${n}`).join(', ')

/** Writes `frame` over and over for `ms` or until `maxBytes`, respecting backpressure; the bytes the kernel took. */
async function pump (socket, frame, ms, maxBytes) {
  const deadline = now() + ms
  let queued = 0
  while (now() < deadline && queued < maxBytes && !socket.destroyed) {
    queued += frame.length
    if (!socket.write(frame)) {
      await new Promise((resolve) => {
        const timer = setTimeout(finish, Math.max(0, deadline - now()))
        socket.once('drain', finish)
        socket.once('close', finish)
        function finish () {
          clearTimeout(timer)
          socket.removeListener('drain', finish)
          socket.removeListener('close', finish)
          resolve()
        }
      })
    }
  }
  return socket.bytesWritten - socket.writableLength
}

// ---------------------------------------------------------------------------
// Servers.

/** Fresh servers, started at once; each notes when its process exits. */
async function startAll (specs, env = {}) {
  const servers = await Promise.all(specs.map((spec) => startServer({ ...spec, env: { ...spec.env, ...env } })))
  for (const server of servers) {
    server.exit = null
    server.proc.child.once('exit', (code, signal) => { server.exit = { code, signal } })
  }
  return servers
}

async function stopAll (servers) {
  await Promise.all(servers.map(async (server) => {
    if (server.exit !== null) return
    const exited = new Promise((resolve) => server.proc.child.once('exit', resolve))
    server.proc.child.kill('SIGKILL')
    await exited
  }))
}

/** An IPC question to a server, or undefined if it has exited or does not answer within `ms`. */
async function ask (server, message, ms = 10_000) {
  if (server.exit !== null) return undefined
  let timer, onExit
  const timeout = new Promise((resolve) => { timer = setTimeout(resolve, ms) })
  const exited = new Promise((resolve) => { onExit = () => resolve(); server.proc.child.once('exit', onExit) })
  const answer = await Promise.race([server.proc.ask(message), timeout, exited])
  clearTimeout(timer)
  server.proc.child.removeListener('exit', onExit)
  return answer
}

/** Memory after GC (common.mjs 'stats'): rss, heapUsed, connections, pending. */
async function stats (server) {
  const answer = await ask(server, { cmd: 'stats' })
  return answer === undefined ? null : { rss: answer.rss, heapUsed: answer.heapUsed, connections: answer.connections, pending: answer.pending }
}

/** Memory now, without a GC, and the process's peak RSS. */
async function memNow (server, ms) {
  const answer = await ask(server, { cmd: 'mem' }, ms)
  return answer === undefined ? null : { rss: answer.rss, heapUsed: answer.heapUsed, external: answer.external, arrayBuffers: answer.arrayBuffers, maxRss: answer.maxRss, received: answer.received }
}

async function errorsOf (server) {
  return (await ask(server, { cmd: 'errors' }))?.errors ?? null
}

/** Whether the server still answers a normal upgrade: its outcome ('101' if so). */
const health = (server, path = '/accept') => exchange(server.port, upgrade(path), 2000)

async function cpuUs (server) {
  return server.exit === null ? await cpuTime(server) : null
}

/**
 * The frame every attack's figures share, for one server: CPU and memory
 * before and after `run`, a normal handshake afterwards, error-level logs,
 * and whether the process survived. `run` returns the attack's own figures.
 */
async function measured (server, run) {
  const before = await stats(server)
  const cpu0 = await cpuUs(server)
  const result = await run()
  const cpu1 = await cpuUs(server)
  const after = result.skipAfter ? null : await stats(server)
  delete result.skipAfter
  return {
    ...result,
    cpuMs: cpu0 !== null && cpu1 !== null ? (cpu1 - cpu0) / 1000 : null,
    memory: { before, after },
    healthAfter: server.exit === null && result.healthAfter === undefined ? await health(server) : (result.healthAfter ?? 'exited'),
    errors: await errorsOf(server),
    exit: server.exit
  }
}

// ---------------------------------------------------------------------------
// Attacks. Each returns rows: { attack, case, count, results: { [server key]: figures, with a one-line summary } }.

/** CPU per upgrade for one request, sent `upgrades` times (`inFlight` at a time) in each of `rounds` interleaved rounds. */
async function cpuPerUpgrade (servers, bytes) {
  const results = {}
  await Promise.all(servers.map(async (server) => { results[server.key] = { before: await stats(server), outcomes: [], rounds: [] } }))
  for (const server of servers) {
    for (let i = 0; i < config.warmup; i++) await exchange(server.port, bytes)
  }
  // Each round: every server in turn, from a different first one.
  for (let round = 0; round < config.rounds; round++) {
    for (let i = 0; i < servers.length; i++) {
      const server = servers[(i + round) % servers.length]
      const r = results[server.key]
      const cpu0 = await cpuUs(server)
      let sent = 0
      await Promise.all(Array.from({ length: config.inFlight }, async () => {
        while (sent < config.upgrades) {
          sent++
          r.outcomes.push(await exchange(server.port, bytes))
        }
      }))
      const cpu1 = await cpuUs(server)
      r.rounds.push(cpu0 === null || cpu1 === null ? null : (cpu1 - cpu0) / config.upgrades)
    }
  }
  for (const server of servers) {
    const r = results[server.key]
    const valid = r.rounds.filter((us) => us !== null)
    results[server.key] = {
      client: tally(r.outcomes),
      cpuUsPerUpgrade: valid.length > 0 ? median(valid) : null,
      cpuUsRounds: r.rounds,
      memory: { before: r.before, after: await stats(server) },
      healthAfter: server.exit === null ? await health(server) : 'exited',
      errors: await errorsOf(server),
      exit: server.exit
    }
    const f = results[server.key]
    f.summary = `${formatTally(f.client)}; ${f.cpuUsPerUpgrade === null ? '?' : (f.cpuUsPerUpgrade / 1000).toFixed(2)} ms CPU/upgrade`
  }
  return results
}

async function protocolsAttack () {
  const rows = []
  const servers = await startAll(COLUMNS)
  try {
    for (const n of config.tokens) {
      // Distinct tokens, base 36, comma-separated: 3,000 take 10.7 kB.
      const value = Array.from({ length: n }, (_, i) => i.toString(36)).join(',')
      const bytes = upgrade('/accept', n === 0 ? [] : [`Sec-WebSocket-Protocol: ${value}`])
      console.error(`protocols: ${n} tokens (${bytes.length} B request)`)
      rows.push({
        attack: 'protocols',
        case: n === 0 ? 'no Sec-WebSocket-Protocol (reference)' : `Sec-WebSocket-Protocol, ${n} distinct tokens (${bytes.length} B request)`,
        count: config.upgrades * config.rounds,
        results: await cpuPerUpgrade(servers, bytes)
      })
    }
  } finally {
    await stopAll(servers)
  }
  return rows
}

async function headersAttack () {
  const rows = []
  const servers = await startAll(COLUMNS)
  try {
    for (const n of config.tokens.filter((n) => n > 0)) {
      const bytes = upgrade('/accept', Array.from({ length: n }, (_, i) => `X-Junk-${i}: x`))
      console.error(`headers: ${n} X-Junk-i headers (${bytes.length} B request)`)
      rows.push({
        attack: 'headers',
        case: `${n} distinct X-Junk-i headers (${bytes.length} B request)`,
        count: config.upgrades * config.rounds,
        results: await cpuPerUpgrade(servers, bytes)
      })
    }
  } finally {
    await stopAll(servers)
  }
  return rows
}

// Slowloris: `slowloris` connections per server, each sending the head of an
// upgrade one byte every `slowlorisEveryMs`, never finishing it (after the
// real head's lines, an endless header value). All servers at once.
async function slowlorisAttack () {
  const servers = await startAll(SERVERS)
  const results = {}
  const trickle = Buffer.from(`GET /accept HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\nX-Slow: `, 'latin1')
  const byteAt = (i) => (i < trickle.length ? trickle.subarray(i, i + 1) : Buffer.from('a'))
  console.error(`slowloris: ${config.slowloris} connections per server, one byte every ${config.slowlorisEveryMs} ms, for ${config.slowlorisMs} ms`)
  try {
    await Promise.all(servers.map(async (server) => {
      results[server.key] = await measured(server, async () => {
        const conns = []
        for (let i = 0; i < config.slowloris; i++) {
          const conn = new Conn(server.port)
          conn.sent = 0
          conns.push(conn)
        }
        const started = now()
        const timer = setInterval(() => {
          for (const conn of conns) {
            if (conn.closedAt === null && !conn.socket.destroyed && conn.socket.writable) conn.socket.write(byteAt(conn.sent++))
          }
        }, config.slowlorisEveryMs)
        // A normal handshake while they are held, then the server's view.
        await wait(Math.min(5000, config.slowlorisMs / 2))
        const healthDuring = await health(server)
        const during = await stats(server)
        await wait(Math.max(0, started + config.slowlorisMs - now()))
        clearInterval(timer)
        const closed = conns.filter((conn) => conn.closedAt !== null)
        const keptMs = closed.map((conn) => conn.closedAt - conn.started)
        const figures = {
          client: tally(conns.map((conn) => conn.outcome)),
          closedByServer: closed.length,
          keptMs: keptMs.length > 0 ? { min: Math.min(...keptMs), median: median(keptMs), max: Math.max(...keptMs) } : null,
          openAtBound: conns.length - closed.length,
          bytesSentMax: Math.max(...conns.map((conn) => conn.sent)),
          healthDuring,
          during
        }
        for (const conn of conns) conn.destroy()
        await wait(200)
        return figures
      })
      const f = results[server.key]
      const kept = f.keptMs === null ? '' : ` after ${(f.keptMs.min / 1000).toFixed(1)}–${(f.keptMs.max / 1000).toFixed(1)} s`
      f.summary = `${f.closedByServer}/${config.slowloris} closed by the server${kept} (${formatTally(f.client)}); ` +
        `${f.openAtBound} still open at ${config.slowlorisMs / 1000} s; handshake during: ${f.healthDuring}; CPU ${cpuSeconds(f)}`
    }))
  } finally {
    await stopAll(servers)
  }
  return [{ attack: 'slowloris', case: `one byte every ${config.slowlorisEveryMs} ms, never finishing the head, ${config.slowlorisMs / 1000} s`, count: config.slowloris, results }]
}

// A flood of valid upgrades to /pending, whose decision never comes: all sent
// (200 connecting at a time), held `floodWaitMs` after the last, then
// released. One server at a time; then the gate again with a lower
// maxPendingHandshakes (floodCap), since with its defaults the 10 s
// handshakeTimeout may answer the first before the last are in.
async function floodAttack () {
  const rows = []
  const capped = { ...SERVERS[0], env: { ...SERVERS[0].env, WS_GATE_MAX_PENDING: String(config.floodCap) } }
  const cases = [['defaults', SERVERS], [`fastify-ws-gate with maxPendingHandshakes: ${config.floodCap}`, [capped]]]
  for (const [label, specs] of cases) {
    const results = {}
    for (const spec of specs) {
      console.error(`flood: ${config.flood} upgrades to a never-settling handshake, ${spec.key} (${label})`)
      const [server] = await startAll([spec])
      try {
        results[server.key] = await measured(server, async () => {
          const conns = []
          const bytes = upgrade('/pending')
          const started = now()
          let next = 0
          await Promise.all(Array.from({ length: 200 }, async () => {
            while (next < config.flood) {
              next++
              const conn = new Conn(server.port, bytes)
              conns.push(conn)
              await new Promise((resolve) => {
                conn.socket.once('connect', resolve)
                conn.socket.once('close', resolve)
              })
            }
          }))
          const sentMs = now() - started
          await wait(Math.min(1000, config.floodWaitMs))
          const held = tally(conns.map((conn) => conn.outcome))
          const healthDuring = await health(server)
          const during = await stats(server)
          const peak = await memNow(server)
          await wait(Math.max(0, started + sentMs + config.floodWaitMs - now()))
          const atBound = tally(conns.map((conn) => conn.outcome))
          for (const conn of conns) conn.destroy()
          await wait(500)
          return { sentMs, client: held, clientAtBound: atBound, healthDuring, during, maxRss: peak?.maxRss ?? null }
        })
      } finally {
        await stopAll([server])
      }
      const f = results[spec.key]
      const d = f.during
      f.summary = `sent in ${(f.sentMs / 1000).toFixed(1)} s; 1 s after the last: ${formatTally(f.client)}` +
        `${d === null ? '' : ` (server: ${d.connections} open, ${d.pending} reached the handler, heap ${mib(d.heapUsed)}, RSS ${mib(d.rss)})`}; ` +
        `${config.floodWaitMs / 1000} s after: ${formatTally(f.clientAtBound)}; handshake during: ${f.healthDuring}; CPU ${cpuSeconds(f)}`
    }
    rows.push({ attack: 'flood', case: `valid upgrades to a handshake that never settles, held ${config.floodWaitMs / 1000} s after the last (${label})`, count: config.flood, results })
  }
  return rows
}

// Early frames: an upgrade, and right behind it (same write) earlyBytes of
// masked binary frames (64 KiB each), before any answer. To a route that
// accepts at once, and to one whose decision never comes.
async function earlyFramesAttack () {
  const rows = []
  const frames = Buffer.concat(Array.from({ length: config.earlyBytes / 65536 }, () => binaryFrame(65536)))
  for (const path of ['/accept', '/pending']) {
    console.error(`early-frames: ${path}, ${config.earlyFrames} connections × ${mib(frames.length)}`)
    const servers = await startAll(SERVERS)
    const results = {}
    try {
      for (const server of servers) {
        results[server.key] = await measured(server, async () => {
          const start = await memNow(server)
          const conns = Array.from({ length: config.earlyFrames }, () => new Conn(server.port, Buffer.concat([upgrade(path), frames])))
          await wait(config.earlyWaitMs)
          const peak = await memNow(server)
          const figures = {
            messagesReceived: start === null || peak === null ? null : peak.received.messages - start.received.messages,
            client: tally(conns.map((conn) => conn.outcome)),
            closedByServer: conns.filter((conn) => conn.closedAt !== null).length,
            bytesTaken: median(conns.map((conn) => conn.socket.bytesWritten - conn.socket.writableLength)),
            maxRss: peak?.maxRss ?? null
          }
          for (const conn of conns) conn.destroy()
          await wait(200)
          return figures
        })
        const f = results[server.key]
        f.summary = `${formatTally(f.client)}; ${f.closedByServer} closed by the server within ${config.earlyWaitMs / 1000} s; ${f.messagesReceived ?? '?'} frames received as messages; ` +
          `peak RSS +${f.maxRss === null || f.memory.before === null ? '?' : mib(f.maxRss - f.memory.before.rss)}; CPU ${cpuSeconds(f)}`
      }
    } finally {
      await stopAll(servers)
    }
    rows.push({ attack: 'early-frames', case: `${mib(frames.length)} of frames right after the head, to ${path}`, count: config.earlyFrames, results })
  }
  return rows
}

// A client that ignores the server's close frame and keeps sending 1 MiB
// binary frames for ignoredCloseMs (or ignoredCloseMaxBytes), to a route that
// accepts and then closes; for the gate also an asgi() app that accepts, then
// sends websocket.close. Server memory sampled every 250 ms (no GC). One
// fresh server per row and server, so that the peak RSS is the row's.
async function ignoredCloseAttack () {
  const rows = []
  const frame = binaryFrame(MiB)
  const cases = [['/close', 'route that accepts, then closes (1000)', SERVERS], ['/asgi-close', 'asgi() app that accepts, then sends websocket.close', SERVERS.slice(0, 1)]]
  for (const [path, label, specs] of cases) {
    const results = {}
    for (const spec of specs) {
      console.error(`ignored-close: ${spec.key} ${path}`)
      const [server] = await startAll([spec])
      try {
        results[spec.key] = await measured(server, async () => {
          const conn = new Conn(server.port, upgrade(path))
          await conn.answered(2000)
          if (conn.status !== 101) return { client: conn.outcome, bytesSent: 0 }
          await conn.until(() => conn.closeCode !== null || conn.closedAt !== null, 2000)
          const start = await memNow(server)
          const samples = []
          const sampler = setInterval(async () => {
            const m = await memNow(server, 1000)
            if (m !== null) samples.push(m.rss)
          }, 250)
          const started = now()
          const bytesSent = await pump(conn.socket, frame, config.ignoredCloseMs, config.ignoredCloseMaxBytes)
          const sentMs = now() - started
          clearInterval(sampler)
          const peak = await memNow(server)
          const figures = {
            client: `101, close frame ${conn.closeCode ?? 'none'}`,
            bytesSent,
            // Messages the route's socket emitted (none on /asgi-close, whose messages go to the app's queue).
            messagesReceived: start === null || peak === null ? null : peak.received.messages - start.received.messages,
            sentMs,
            closedByServerAfterMs: conn.closedAt === null ? null : conn.closedAt - started,
            rssSamples: samples,
            rssAtEnd: peak?.rss ?? null,
            maxRss: peak?.maxRss ?? null
          }
          conn.destroy()
          await wait(500)
          return figures
        })
      } finally {
        await stopAll([server])
      }
      const f = results[spec.key]
      const closed = f.closedByServerAfterMs === null ? `still open at ${(config.ignoredCloseMs / 1000).toFixed(1)} s` : `closed by the server after ${(f.closedByServerAfterMs / 1000).toFixed(1)} s`
      const messages = path === '/asgi-close' ? '' : `, ${f.messagesReceived ?? '?'} received as messages`
      f.summary = `${f.client}; sent ${mib(f.bytesSent)}${messages}, ${closed}; peak RSS +${f.maxRss === null || f.memory.before === null ? '?' : mib(f.maxRss - f.memory.before.rss)}, ` +
        `after GC once gone +${f.memory.after === null || f.memory.before === null ? '?' : mib(f.memory.after.rss - f.memory.before.rss)}; CPU ${cpuSeconds(f)}`
    }
    rows.push({ attack: 'ignored-close', case: `${label} (${path}); 1 MiB frames for ${config.ignoredCloseMs / 1000} s`, count: 1, results })
  }
  return rows
}

// Malformed upgrades to /accept, one connection each: the status each server answers.
const MALFORMED = [
  ['no Host', rawRequest('GET /accept HTTP/1.1', UPGRADE.slice(1))],
  ['two Host headers', rawRequest('GET /accept HTTP/1.1', ['Host: 127.0.0.1', 'Host: example.com', ...UPGRADE.slice(1)])],
  ['POST', rawRequest('POST /accept HTTP/1.1', [...UPGRADE, 'Content-Length: 0'])],
  ['HTTP/1.0', rawRequest('GET /accept HTTP/1.0', UPGRADE)],
  ['bad Sec-WebSocket-Key', rawRequest('GET /accept HTTP/1.1', [...UPGRADE.slice(0, 3), 'Sec-WebSocket-Key: abc', UPGRADE[4]])],
  ['Sec-WebSocket-Version: 8', rawRequest('GET /accept HTTP/1.1', [...UPGRADE.slice(0, 4), 'Sec-WebSocket-Version: 8'])],
  ['Upgrade: websocket without Connection: upgrade', rawRequest('GET /accept HTTP/1.1', [...UPGRADE.slice(0, 2), 'Connection: keep-alive', ...UPGRADE.slice(3)])]
]

// An upgrade to a route declared before the gate was registered, whose
// handshake always refuses (401): the gate's alone, as only it has `handshake`.
async function ungatedAttack () {
  const [server] = await startAll(SERVERS.slice(0, 1))
  const results = {}
  try {
    results.gate = await measured(server, async () => ({ client: await exchange(server.port, upgrade('/declared-before'), 2000) }))
    results.gate.summary = results.gate.client
  } finally {
    await stopAll([server])
  }
  return [{ attack: 'ungated', case: 'upgrade to a route declared before the gate, whose handshake always refuses', count: 1, results }]
}

async function malformedAttack () {
  const servers = await startAll(SERVERS)
  const rows = []
  try {
    for (const [label, bytes] of MALFORMED) {
      console.error(`malformed: ${label}`)
      const results = {}
      await Promise.all(servers.map(async (server) => {
        results[server.key] = await measured(server, async () => ({ client: await exchange(server.port, bytes, 2000) }))
        results[server.key].summary = results[server.key].client
      }))
      rows.push({ attack: 'malformed', case: label, count: 1, results })
    }
  } finally {
    await stopAll(servers)
  }
  return rows
}

// Shutdown race: one accepted client that reads but never answers the close
// frame; an upgrade to /slow-hook (in an async hook, or verifyClient, for
// SLOW_HOOK_MS); 100 ms later the server's graceful close. All servers at once.
async function shutdownAttack () {
  const servers = await startAll(SERVERS)
  const results = {}
  console.error(`shutdown: close() with an accepted client ignoring the close frame and an upgrade in a hook; bound ${config.shutdownMs / 1000} s`)
  try {
    await Promise.all(servers.map(async (server) => {
      results[server.key] = await measured(server, async () => {
        const accepted = new Conn(server.port, upgrade('/accept'))
        await accepted.answered(2000)
        const late = new Conn(server.port, upgrade('/slow-hook'))
        await wait(100)
        const started = now()
        const closed = await ask(server, { cmd: 'close' }, config.shutdownMs)
        // A 101 for the late upgrade: wait for its close too, within the bound;
        // and the accepted client's connection may end just after close() settles.
        await late.until(() => late.closedAt !== null || late.closeCode !== null, Math.max(0, started + config.shutdownMs - now()))
        await accepted.until(() => accepted.closedAt !== null, Math.min(1000, Math.max(0, started + config.shutdownMs - now())))
        const since = (t) => (t === null ? null : t - started)
        const figures = {
          client: `accepted: ${accepted.outcome}, close frame ${accepted.closeCode ?? 'none'}; late upgrade: ${late.outcome}${late.status === 101 ? `, close frame ${late.closeCode ?? 'none'}` : ''}`,
          closeSettledMs: closed?.ms ?? null,
          closeError: closed?.error ?? null,
          accepted: { outcome: accepted.outcome, closeCode: accepted.closeCode, closeFrameMs: since(accepted.closeFrameAt), closedMs: since(accepted.closedAt) },
          late: { outcome: late.outcome, closeCode: late.closeCode, closeFrameMs: since(late.closeFrameAt), closedMs: since(late.closedAt) },
          healthAfter: 'n/a (closed)',
          skipAfter: closed === undefined
        }
        accepted.destroy()
        late.destroy()
        return figures
      })
      const f = results[server.key]
      const settled = f.closeSettledMs === null ? `close() not settled within ${config.shutdownMs / 1000} s` : `close() settled in ${(f.closeSettledMs / 1000).toFixed(2)} s`
      const cut = (c) => (c.closedMs === null ? 'open at the bound' : `closed at ${(c.closedMs / 1000).toFixed(2)} s`)
      f.summary = `${settled}; accepted: close frame ${f.accepted.closeCode ?? 'none'}, ${cut(f.accepted)}; late upgrade: ${f.late.outcome}` +
        `${f.late.outcome === '101' ? `, close frame ${f.late.closeCode ?? 'none'}, ${cut(f.late)}` : ''}`
    }))
  } finally {
    await stopAll(servers)
  }
  return [{ attack: 'shutdown', case: 'close() with an accepted client ignoring 1001, and an upgrade in an async hook', count: 1, results }]
}

// ---------------------------------------------------------------------------

function git (...args) {
  try {
    return execFileSync('git', args, { cwd: fileURLToPath(new URL('..', import.meta.url)), encoding: 'utf8' }).trim()
  } catch {
    return null
  }
}

function report (rows) {
  const lines = []
  lines.push(`| attack | case | count | ${COLUMNS.map((server) => server.name).join(' | ')} |`)
  lines.push(`|---|---|---:|${COLUMNS.map(() => '---').join('|')}|`)
  for (const row of rows) {
    const cells = COLUMNS.map((server) => {
      const f = row.results[server.key]
      if (f === undefined) return '—'
      let cell = f.summary
      if (f.exit !== null) cell += `; EXITED (${f.exit.code ?? f.exit.signal})`
      if (f.healthAfter !== '101' && !String(f.healthAfter).startsWith('n/a')) cell += `; handshake after: ${f.healthAfter}`
      if (f.errors === null) cell += '; error logs: ?'
      else if (f.errors.length > 0) {
        const kinds = [...new Set(f.errors.map((e) => `${e.msg}${e.code ? ` (${e.code})` : ''}`))]
        cell += `; ${f.errors.length} error log(s): ${kinds.slice(0, 3).join(', ')}`
      }
      return cell.replaceAll('FST_WS_GATE_', '').replaceAll('|', '\\|')
    })
    lines.push(`| ${row.attack} | ${row.case} | ${row.count} | ${cells.join(' | ')} |`)
  }
  return lines.join('\n')
}

async function main () {
  const started = Date.now()
  // The machine may be shared: its load before and after the run.
  const load = [loadavg()]
  const rows = []
  for (const name of chosen) rows.push(...await ATTACKS[name]())
  const text = report(rows)
  console.log(text)
  const commit = git('rev-parse', 'HEAD')
  const out = writeResults({
    date: new Date().toISOString(),
    commit,
    // Uncommitted changes under lib/ (the gate's dist/ may be built from them).
    libChanges: flags.gate === undefined ? git('status', '--porcelain', '--', 'lib') : null,
    gateBuild: flags.gate === undefined ? 'dist/' : { dir: flags.gate, commit: git('-C', resolve(flags.gate), 'rev-parse', 'HEAD') },
    node: process.version,
    cpus: cpus().length,
    loadavg: [...load, loadavg()],
    pinned: pin,
    quick,
    attacks: chosen,
    config,
    servers: COLUMNS.map(({ key, name, env }) => ({ key, name, module: env?.WS_GATE_MODULE ?? null })),
    elapsedMs: Date.now() - started,
    rows
  }, flags.out, 'attacks-')
  console.log(`\n${quick ? 'quick run; ' : ''}commit ${commit}; ${((Date.now() - started) / 1000).toFixed(0)} s; ` +
    `load average ${load[0][0].toFixed(1)} before, ${loadavg()[0].toFixed(1)} after; written: ${out}`)
}

await main()
