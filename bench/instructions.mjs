// Instructions per handshake, counted by valgrind's callgrind: unlike CPU time,
// the count does not depend on what else the machine is doing, so a 5% budget
// can be checked on a shared, noisy machine. Each server runs twice under
// callgrind, for BASE and for BASE + N handshakes; the difference over N is the
// cost of one handshake, with startup and warm-up cancelled out.
//
//   npm run bench:instructions                       accept and reject, gate vs @fastify/websocket
//   flags: --handshakes N (default 2000) --base N (default 200) --routes accept,reject --out FILE
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const { values: flags } = parseArgs({
  options: {
    handshakes: { type: 'string', default: '2000' },
    base: { type: 'string', default: '200' },
    routes: { type: 'string', default: 'accept,reject' },
    out: { type: 'string' }
  }
})
const N = Number(flags.handshakes)
const BASE = Number(flags.base)
const ROUTES = { accept: 101, reject: 401 }
const SERVERS = [['gate', 'servers/gate.mjs'], ['fws', 'servers/fastify-websocket.mjs']]

if (spawnSync('valgrind', ['--version']).status !== 0) {
  console.error('valgrind is not installed (Debian: apt-get install valgrind)')
  process.exit(1)
}

const message = (child) => once(child, 'message').then(([m]) => m)

// Total instructions of one server process that answers `count` handshakes.
async function count (file, path, expected, count) {
  const out = join(tmpdir(), `ws-gate-callgrind-${process.pid}-${Date.now()}`)
  // --single-threaded: no background compiler or GC threads, so that the
  // count depends on the work alone.
  const server = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`,
    process.execPath, '--single-threaded', '--expose-gc', join(here, file)], { stdio: ['ignore', 'inherit', 'ignore', 'ipc'] })
  const load = spawn(process.execPath, [join(here, 'load.mjs')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  await message(load)
  const { port } = await message(server)
  load.send({ cmd: 'run', port, path, count, concurrency: 8, id: 1 })
  const result = await message(load)
  load.kill()
  server.send({ cmd: 'exit' })
  await once(server, 'exit')
  if (result.statuses[expected] !== count) throw new Error(`${file} ${path}: expected ${count} × ${expected}, got ${JSON.stringify(result.statuses)}`)
  const total = Number(/^(?:summary|totals): (\d+)/m.exec(readFileSync(out, 'utf8'))[1])
  rmSync(out)
  return total
}

const results = {}
for (const route of flags.routes.split(',')) {
  for (const [key, file] of SERVERS) {
    console.error(`${key} /${route}: ${BASE} and ${BASE + N} handshakes under callgrind...`)
    const low = await count(file, `/${route}`, ROUTES[route], BASE)
    const high = await count(file, `/${route}`, ROUTES[route], BASE + N)
    results[`${key}/${route}`] = { low, high, perHandshake: (high - low) / N }
  }
}

const rows = Object.keys(ROUTES).filter((route) => results[`gate/${route}`] !== undefined).map((route) => {
  const gate = results[`gate/${route}`].perHandshake
  const fws = results[`fws/${route}`].perHandshake
  return { route, gate: Math.round(gate), fws: Math.round(fws), ratio: Number((gate / fws).toFixed(3)) }
})
console.log('\ninstructions per handshake (callgrind; fastify-ws-gate ÷ @fastify/websocket)')
console.log('| route | fastify-ws-gate | @fastify/websocket | ratio |\n|---|---:|---:|---:|')
for (const row of rows) console.log(`| ${row.route} | ${row.gate.toLocaleString('en')} | ${row.fws.toLocaleString('en')} | ${row.ratio.toFixed(3)} |`)

const file = flags.out ?? join(here, 'results', `instructions-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
mkdirSync(dirname(file), { recursive: true })
writeFileSync(file, JSON.stringify({ node: process.version, handshakes: N, base: BASE, results, rows }, null, 2) + '\n')
console.log(`\nwritten to ${file}`)
