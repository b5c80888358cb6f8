// What the benchmark scripts share: the servers under test, how a server or
// the load generator is started (pinned to its core when taskset is there),
// and how a server's CPU time is read.
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

export const SERVERS = [
  { key: 'gate', name: 'fastify-ws-gate', file: 'servers/gate.mjs' },
  { key: 'fws', name: '@fastify/websocket + preValidation', file: 'servers/fastify-websocket.mjs' },
  { key: 'ws', name: 'ws + verifyClient', file: 'servers/ws.mjs' },
  { key: 'floor', name: 'node:http upgrade (floor)', file: 'servers/floor.mjs' }
]
/** The server every ratio is taken against. */
export const BASELINE = 'fws'
export const ROUTES = [['accept', 101], ['reject', 401]]

/**
 * The servers a run measures: `keys` (comma-separated) picks a subset (the
 * baseline and fastify-ws-gate are always kept, the budgets need them), and
 * `compare` (a checkout) adds fastify-ws-gate as built there (its dist/),
 * for A/B work on a change.
 */
export function selectServers ({ keys, compare }) {
  const keep = keys === undefined ? null : new Set(['gate', BASELINE, ...keys.split(',')])
  const servers = SERVERS.filter((server) => keep === null || keep.has(server.key))
  if (compare !== undefined) {
    servers.splice(1, 0, { key: 'compare', name: `fastify-ws-gate (${compare})`, file: 'servers/gate.mjs', env: { WS_GATE_MODULE: pathToFileURL(resolve(compare, 'dist/index.js')).href } })
  }
  return servers
}

/** The routes a --routes list (comma-separated) names, in the harness's order; an unknown name is an error. */
export function selectRoutes (list) {
  const names = list.split(',')
  const routes = ROUTES.filter(([route]) => names.includes(route))
  if (routes.length !== names.length) throw new Error(`--routes: expected a list of ${ROUTES.map(([route]) => route).join(', ')}, got ${list}`)
  return routes
}

/** What went wrong in a load run whose `count` handshakes should all have been answered `status`, or undefined. */
export function statusProblem (label, statuses, status, count) {
  return statuses[status] === count ? undefined : `${label}: expected ${count} × ${status}, got ${JSON.stringify(statuses)}`
}

/** Writes a run's figures as JSON to `out`, or else to bench/results/<prefix><date>.json; returns the file's path. */
export function writeResults (data, out, prefix = '') {
  const file = out ?? join(here, 'results', `${prefix}${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n')
  return file
}

// With taskset, servers run on core 0 and the load generator on core 1, so
// that they do not take turns on the same core (the machine has two).
export const pin = spawnSync('taskset', ['-c', '0', 'true']).status === 0
export const SERVER_CORE = '0'
export const LOAD_CORE = '1'

/** A child process spoken to over IPC: each request gets the reply with its id. */
export function start (file, execArgv = [], core = SERVER_CORE, env = {}) {
  const node = [...execArgv, join(here, file)]
  const [command, args] = pin ? ['taskset', ['-c', core, process.execPath, ...node]] : [process.execPath, node]
  const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } })
  let nextId = 0
  const waiting = new Map()
  const ready = new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)))
    child.on('message', (message) => {
      if (message.ready) resolve(message)
      else {
        waiting.get(message.id)?.(message)
        waiting.delete(message.id)
      }
    })
  })
  return {
    child,
    ready,
    ask (message) {
      const id = ++nextId
      return new Promise((resolve) => {
        waiting.set(id, resolve)
        child.send({ ...message, id })
      })
    }
  }
}

/** A server under test, started and listening; `execArgv`: more options for its node. */
export async function startServer (spec, execArgv = []) {
  const proc = start(spec.file, ['--expose-gc', ...execArgv], SERVER_CORE, spec.env)
  const { port } = await proc.ready
  return { ...spec, proc, port }
}

/** The server process's CPU time so far (user + system, µs), read without forcing a GC. */
export async function cpuTime (server) {
  const { cpu } = await server.proc.ask({ cmd: 'cpu' })
  return cpu.user + cpu.system
}
