// Instructions per handshake, counted by valgrind's callgrind: unlike CPU time,
// the count does not depend on what else the machine is doing. Each server
// runs twice under callgrind (both at once), for BASE and for BASE + N
// handshakes; the difference over N is the cost of one handshake, with startup
// and warm-up cancelled out. V8 runs in predictable mode (no background
// threads, a fixed GC schedule, fixed seeds) and the load generator keeps one
// handshake in flight, so the same code gives the same count, run after run.
//
//   npm run bench:instructions          accept and reject, gate vs @fastify/websocket (about 20 minutes)
//   flags: --handshakes N (default 3000) --base N (default 4000) --routes accept,reject
//          --servers gate,fws,ws,floor --concurrency N --repeat N --keep DIR --out FILE
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const { values: flags } = parseArgs({
  options: {
    handshakes: { type: 'string', default: '3000' },
    base: { type: 'string', default: '4000' },
    routes: { type: 'string', default: 'accept,reject' },
    servers: { type: 'string', default: 'gate,fws' },
    concurrency: { type: 'string', default: '1' },
    repeat: { type: 'string', default: '1' },
    keep: { type: 'string' },
    out: { type: 'string' }
  }
})
const N = Number(flags.handshakes)
const BASE = Number(flags.base)
const ROUTES = { accept: 101, reject: 401 }
const FILES = { gate: 'servers/gate.mjs', fws: 'servers/fastify-websocket.mjs', ws: 'servers/ws.mjs', floor: 'servers/floor.mjs' }
const SERVERS = flags.servers.split(',').map((key) => [key, FILES[key]])
const CONCURRENCY = Number(flags.concurrency)
const REPEAT = Number(flags.repeat)
// Everything V8 would otherwise vary from run to run: background threads,
// the GC schedule, random and hash seeds.
const V8_FLAGS = ['--single-threaded', '--predictable', '--predictable-gc-schedule', '--random-seed=1', '--hash-seed=1']

if (spawnSync('valgrind', ['--version']).status !== 0) {
  console.error('valgrind is not installed (Debian: apt-get install valgrind)')
  process.exit(1)
}

const message = (child) => once(child, 'message').then(([m]) => m)

// Total instructions of one server process that answers `count` handshakes.
async function count (file, path, expected, count) {
  const out = join(tmpdir(), `ws-gate-callgrind-${process.pid}-${count}-${Date.now()}`)
  // --single-threaded: no background compiler or GC threads, so that the
  // count depends on the work alone.
  const server = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`,
    process.execPath, ...V8_FLAGS, '--expose-gc', join(here, file)], { stdio: ['ignore', 'inherit', 'ignore', 'ipc'] })
  const load = spawn(process.execPath, [join(here, 'load.mjs')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  await message(load)
  const { port } = await message(server)
  load.send({ cmd: 'run', port, path, count, concurrency: CONCURRENCY, id: 1 })
  const result = await message(load)
  load.kill()
  server.send({ cmd: 'exit' })
  await once(server, 'exit')
  if (result.statuses[expected] !== count) throw new Error(`${file} ${path}: expected ${count} × ${expected}, got ${JSON.stringify(result.statuses)}`)
  const total = Number(/^(?:summary|totals): (\d+)/m.exec(readFileSync(out, 'utf8'))[1])
  // --keep DIR: the callgrind files stay, for callgrind_annotate.
  if (flags.keep === undefined) rmSync(out)
  else renameSync(out, join(flags.keep, `${basename(file, '.mjs')}-${path.slice(1)}-${count}.callgrind`))
  return total
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

const results = {}
for (const route of flags.routes.split(',')) {
  for (const [key, file] of SERVERS) {
    const runs = []
    for (let i = 0; i < REPEAT; i++) {
      console.error(`${key} /${route} (${i + 1}/${REPEAT}): ${BASE} and ${BASE + N} handshakes under callgrind...`)
      const [low, high] = await Promise.all([count(file, `/${route}`, ROUTES[route], BASE), count(file, `/${route}`, ROUTES[route], BASE + N)])
      runs.push({ low, high, perHandshake: (high - low) / N })
    }
    const perHandshake = median(runs.map((run) => run.perHandshake))
    const spread = (Math.max(...runs.map((run) => run.perHandshake)) - Math.min(...runs.map((run) => run.perHandshake))) / perHandshake
    results[`${key}/${route}`] = { runs, perHandshake, spread }
  }
}

const NAMES = { gate: 'fastify-ws-gate', fws: '@fastify/websocket', ws: 'ws', floor: 'node:http (floor)' }
const rows = Object.entries(results).map(([id, { perHandshake, spread }]) => {
  const [key, route] = id.split('/')
  const baseline = results[`fws/${route}`]?.perHandshake
  return { server: NAMES[key], route, perHandshake: Math.round(perHandshake), spread: Number((spread * 100).toFixed(3)), ratio: baseline === undefined ? null : Number((perHandshake / baseline).toFixed(3)) }
})
console.log(`\ninstructions per handshake (callgrind; median of ${REPEAT}; × @fastify/websocket)`)
console.log('| server | route | instructions/handshake | spread | × |\n|---|---|---:|---:|---:|')
for (const row of rows) {
  console.log(`| ${row.server} | ${row.route} | ${row.perHandshake.toLocaleString('en')} | ${row.spread.toFixed(3)}% | ${row.ratio?.toFixed(3) ?? '–'} |`)
}

const file = flags.out ?? join(here, 'results', `instructions-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
mkdirSync(dirname(file), { recursive: true })
writeFileSync(file, JSON.stringify({ node: process.version, handshakes: N, base: BASE, concurrency: CONCURRENCY, v8Flags: V8_FLAGS, results, rows }, null, 2) + '\n')
console.log(`\nwritten to ${file}`)
