// Instructions per handshake, counted by valgrind's callgrind: unlike CPU time,
// the count does not depend on what else the machine is doing. Each server
// runs twice under callgrind (both at once), for BASE and for BASE + N
// handshakes; the difference over N is the cost of one handshake, with startup
// and warm-up cancelled out. V8 runs in predictable mode (no background
// threads, a fixed GC schedule, fixed seeds) and the load generator keeps one
// handshake in flight, so the same code gives the same count, run after run.
// Each count is also split into the optimising compiler, the garbage
// collector and the rest (from callgrind_annotate), as the first two land in
// a window by timing.
//
//   npm run bench:instructions          accept and reject, gate vs @fastify/websocket (about 20 minutes)
//   flags: --handshakes N (default 3000) --base N (default 4000) --routes accept,reject
//          --servers gate,fws,ws,floor --concurrency N --repeat N --keep DIR --out FILE
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { BASELINE, SERVERS as HARNESS_SERVERS, selectRoutes, statusProblem, writeResults } from './harness.mjs'
import { median } from './stats.mjs'

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
const KNOWN = Object.fromEntries(HARNESS_SERVERS.map((server) => [server.key, server]))
const SERVERS = flags.servers.split(',').map((key) => {
  if (KNOWN[key] === undefined) throw new Error(`--servers: unknown server ${JSON.stringify(key)} (known: ${Object.keys(KNOWN).join(', ')})`)
  return [key, KNOWN[key].file]
})
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
  const problem = statusProblem(`${file} ${path}`, result.statuses, expected, count)
  if (problem !== undefined) throw new Error(problem)
  const counts = categories(out)
  counts.total = Number(/^(?:summary|totals): (\d+)/m.exec(readFileSync(out, 'utf8'))[1])
  // --keep DIR: the callgrind files stay, for callgrind_annotate.
  if (flags.keep === undefined) rmSync(out)
  else renameSync(out, join(flags.keep, `${basename(file, '.mjs')}-${path.slice(1)}-${count}.callgrind`))
  return counts
}

// Two kinds of work that land in a window by timing rather than by the work
// itself: V8's optimising compilers (a function is compiled once it is hot
// enough, which for a function called once per handshake can be thousands of
// handshakes in) and the garbage collector (a full GC falls in one window and
// not in another). Counted apart, from callgrind_annotate's per-function totals.
const COMPILER = /v8::internal::(?:compiler|maglev|baseline)::|v8::internal::(?:OptimizingCompileDispatcher|OptimizedCompilationJob|TurbofanCompilationJob|Compiler::)/
const GC = /v8::internal::(?:Scavenger|Scavenge|MarkCompact|Marking|MarkingVisitor|ConcurrentMarking|IncrementalMarking|Sweeper|Evacuat|Heap::CollectGarbage|Heap::PerformGarbageCollection|GCTracer|MinorMarkCompact)|IterateAndScavenge|Scavenging|RecordMigratedSlot/
function categories (out) {
  const { stdout } = spawnSync('callgrind_annotate', ['--threshold=100', out], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
  const counts = { compiler: 0, gc: 0 }
  for (const line of stdout.split('\n')) {
    const match = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/.exec(line)
    if (match === null || match[2].includes('PROGRAM TOTALS')) continue
    const instructions = Number(match[1].replaceAll(',', ''))
    if (COMPILER.test(match[2])) counts.compiler += instructions
    else if (GC.test(match[2])) counts.gc += instructions
  }
  return counts
}

const results = {}
for (const [route, status] of selectRoutes(flags.routes)) {
  for (const [key, file] of SERVERS) {
    const runs = []
    for (let i = 0; i < REPEAT; i++) {
      console.error(`${key} /${route} (${i + 1}/${REPEAT}): ${BASE} and ${BASE + N} handshakes under callgrind...`)
      const [low, high] = await Promise.all([count(file, `/${route}`, status, BASE), count(file, `/${route}`, status, BASE + N)])
      const per = (kind) => (high[kind] - low[kind]) / N
      runs.push({ low: low.total, high: high.total, perHandshake: per('total'), compiler: per('compiler'), gc: per('gc') })
    }
    const perHandshake = median(runs.map((run) => run.perHandshake))
    const spread = (Math.max(...runs.map((run) => run.perHandshake)) - Math.min(...runs.map((run) => run.perHandshake))) / perHandshake
    const compiler = median(runs.map((run) => run.compiler))
    const gc = median(runs.map((run) => run.gc))
    const rest = median(runs.map((run) => run.perHandshake - run.compiler - run.gc))
    results[`${key}/${route}`] = { runs, perHandshake, spread, compiler, gc, rest }
  }
}

const ratio = (value, baseline) => baseline === undefined ? null : Number((value / baseline).toFixed(3))
const rows = Object.entries(results).map(([id, { perHandshake, spread, compiler, gc, rest }]) => {
  const [key, route] = id.split('/')
  const baseline = results[`${BASELINE}/${route}`]
  return {
    server: KNOWN[key].name,
    route,
    perHandshake: Math.round(perHandshake),
    spread: Number((spread * 100).toFixed(3)),
    ratio: ratio(perHandshake, baseline?.perHandshake),
    compiler: Math.round(compiler),
    gc: Math.round(gc),
    rest: Math.round(rest),
    restRatio: ratio(rest, baseline?.rest)
  }
})
const fmt = (n) => n.toLocaleString('en')
console.log(`\ninstructions per handshake (callgrind; median of ${REPEAT}; × @fastify/websocket)`)
console.log('| server | route | instructions/handshake | spread | × | of which optimising compiler | GC | the rest | × |\n|---|---|---:|---:|---:|---:|---:|---:|---:|')
for (const row of rows) {
  console.log(`| ${row.server} | ${row.route} | ${fmt(row.perHandshake)} | ${row.spread.toFixed(3)}% | ${row.ratio?.toFixed(3) ?? '–'} | ${fmt(row.compiler)} | ${fmt(row.gc)} | ${fmt(row.rest)} | ${row.restRatio?.toFixed(3) ?? '–'} |`)
}

const file = writeResults({ node: process.version, handshakes: N, base: BASE, concurrency: CONCURRENCY, v8Flags: V8_FLAGS, results, rows }, flags.out, 'instructions-')
console.log(`\nwritten to ${file}`)
