// Where a handshake's CPU time goes, the whole stack: `npm run bench:perf`.
//
// V8's own profiler charges builtins and the runtime to the JavaScript that
// called them and cannot see the kernel or the GC's helper threads; valgrind
// counts instructions, not time. Here Linux perf samples the server processes
// (cpu-clock, with call graphs), driven at once as in bench:paired after a
// warm-up, and each sample is charged:
// - to a category: the main thread's JavaScript and runtime, its kernel time,
//   its GC, and the helper threads' GC and other work;
// - to the module and the function of its innermost JavaScript frame, with
//   the runtime, builtins and kernel time below that frame.
// Node writes /tmp/perf-<pid>.map for its JIT code (--perf-basic-prof). V8
// reuses code space, so where two entries overlap the later one is kept
// before perf reads it. Figures are µs per handshake, over all sessions.
// With inlining, an inlined function's time is its caller's; --no-inlining
// charges each function its own (and changes what is measured a little).
// Needs perf (Debian: apt-get install linux-perf).
//
//   npm run bench:perf               accept, gate vs @fastify/websocket, 2 sessions × 15,000 handshakes
//   flags: --sessions N --handshakes N --warmup N --frequency HZ --route accept|reject
//          --compare DIR --top N --no-inlining --keep (leave perf.data and the maps) --out FILE
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { BASELINE, LOAD_CORE, pin, selectRoutes, selectServers, start, startServer, statusProblem, writeResults } from './harness.mjs'

const { values: flags } = parseArgs({
  options: {
    sessions: { type: 'string', default: '2' },
    handshakes: { type: 'string', default: '15000' },
    warmup: { type: 'string', default: '5000' },
    frequency: { type: 'string', default: '20000' },
    route: { type: 'string', default: 'accept' },
    compare: { type: 'string' },
    top: { type: 'string', default: '20' },
    'no-inlining': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    out: { type: 'string' }
  }
})
const [[route, status]] = selectRoutes(flags.route)
const config = {
  sessions: Number(flags.sessions),
  handshakes: Number(flags.handshakes),
  warmup: Number(flags.warmup),
  frequency: Number(flags.frequency),
  route,
  inlining: !flags['no-inlining']
}
const TOP = Number(flags.top)
const SERVERS = selectServers({ keys: 'gate,fws', compare: flags.compare })
const execArgv = ['--perf-basic-prof', '--interpreted-frames-native-stack', ...(config.inlining ? [] : ['--no-turbo-inlining'])]

if (spawnSync('perf', ['--version']).status !== 0) {
  console.error('perf is not installed (Debian: apt-get install linux-perf)')
  process.exit(1)
}

// Keeps the latest of overlapping entries of a perf map (V8 reuses code space).
function cleanMap (file) {
  const entries = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => {
    const [start, size] = line.split(' ')
    return { start: BigInt(`0x${start}`), end: BigInt(`0x${start}`) + BigInt(`0x${size}`), line }
  })
  const kept = [] // sorted by start, none overlapping
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = entries[i]
    let lo = 0
    let hi = kept.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (kept[mid].start < entry.start) lo = mid + 1
      else hi = mid
    }
    if ((lo > 0 && kept[lo - 1].end > entry.start) || (lo < kept.length && entry.end > kept[lo].start)) continue
    kept.splice(lo, 0, entry)
  }
  writeFileSync(file, kept.map(({ line }) => line).join('\n') + '\n')
}

const GC = /Heap::|Scavenger|MarkCompact|Marking|Sweeper|MinorMC|GCTracer|Evacuat/
const JS_FRAME = /^(JS|Eval):[*~^+]?\s*/
// The module of a JavaScript frame: a package, fastify-ws-gate's build, a benchmark server, or Node's own.
function moduleOf (frame) {
  const found = /node_modules\/(@[^/]+\/[^/]+|[^/.][^/]*)\/|\/dist\/(?:engine|fastify|asgi)\/|\/bench\/servers\/|node:[a-z_/]+/.exec(frame)
  if (found === null) return '(other JavaScript)'
  if (found[1] !== undefined) return found[1]
  if (found[0].startsWith('/dist/')) return 'fastify-ws-gate'
  if (found[0] === '/bench/servers/') return 'the benchmark server'
  return found[0]
}

// One server's samples: the count, and per category, module and function.
const noSamples = () => ({ samples: 0, categories: {}, modules: {}, functions: {} })

// Reads `perf script` for one recording, charging each sample of the given pids.
async function charge (data, servers) {
  const byPid = new Map(servers.map((server) => [String(server.proc.child.pid), noSamples()]))
  const add = (table, key) => { table[key] = (table[key] ?? 0) + 1 }
  const script = spawn('perf', ['script', '-i', data, '-F', 'pid,tid,ip,sym,dso'], { stdio: ['ignore', 'pipe', 'ignore'] })
  let head = null
  let frames = []
  const flush = () => {
    const figures = head === null ? undefined : byPid.get(head.pid)
    if (figures !== undefined && frames.length > 0) {
      figures.samples++
      const js = frames.findIndex((frame) => JS_FRAME.test(frame))
      const below = js === -1 ? frames : frames.slice(0, js)
      const kernel = below.some((frame) => frame.includes('[kernel.kallsyms]'))
      // The GC's own frames below the innermost JavaScript one (a scavenge an allocation started is GC, not the allocating function's work).
      const gc = below.some((frame) => GC.test(frame))
      const thread = head.pid === head.tid ? 'main thread' : 'helper threads'
      add(figures.categories, `${thread}: ${gc ? 'GC' : kernel ? 'kernel' : js === -1 ? 'native, no JavaScript' : 'JavaScript and runtime'}`)
      if (js !== -1) {
        const name = frames[js].replace(JS_FRAME, '').replace(/ \(\/tmp\/perf-\d+\.map\)$/, '')
        add(figures.modules, moduleOf(name))
        add(figures.functions, name.replace('file://', '').replace(/\/\S*\/(node_modules|dist|bench)\//, '$1/'))
      }
    }
    head = null
    frames = []
  }
  const lines = createInterface({ input: script.stdout })
  for await (const line of lines) {
    const text = line.trim()
    if (text === '') {
      flush()
    } else if (head === null) {
      const [pid, tid] = text.split(/\s+/)[0].split('/')
      head = { pid, tid }
    } else {
      frames.push(text.replace(/^[0-9a-f]+ /, '').replace(/\+0x[0-9a-f]+/, ''))
    }
  }
  flush()
  // Its output is read to the end; it may have exited already.
  if (script.exitCode === null && script.signalCode === null) await once(script, 'exit')
  return servers.map((server) => byPid.get(String(server.proc.child.pid)))
}

const load = start('load.mjs', [], LOAD_CORE)
await load.ready
const problems = []
const work = mkdtempSync(join(tmpdir(), 'ws-gate-perf-'))
// totals[key]: samples per table, summed over sessions.
const totals = Object.fromEntries(SERVERS.map(({ key }) => [key, noSamples()]))

async function together (servers, count) {
  const { results } = await load.ask({ cmd: 'runAll', ports: servers.map((server) => server.port), path: `/${route}`, count, concurrency: 64 })
  for (const [i, server] of servers.entries()) {
    const problem = statusProblem(`${server.key} /${route}`, results[i].statuses, status, count)
    if (problem !== undefined) problems.push(problem)
  }
}

for (let session = 0; session < config.sessions; session++) {
  const servers = []
  for (const spec of SERVERS) servers.push(await startServer(spec, execArgv))
  console.error(`session ${session + 1}/${config.sessions}`)
  await together(servers, config.warmup)
  const data = join(work, `perf-${session}.data`)
  const record = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', String(config.frequency), '-g', '-o', data,
    '-p', servers.map((server) => server.proc.child.pid).join(',')], { stdio: ['ignore', 'inherit', 'inherit'] })
  // perf needs a moment to attach to every thread.
  await new Promise((resolve) => setTimeout(resolve, 1000))
  await together(servers, config.handshakes)
  record.kill('SIGINT')
  const [code] = await once(record, 'exit')
  for (const server of servers) server.proc.child.kill()
  await Promise.all(servers.map((server) => server.proc.child.exitCode === null ? once(server.proc.child, 'exit') : null))
  if (code !== 0 && !existsSync(data)) {
    problems.push(`perf record exited with ${code} (is perf_event_paranoid above 2?)`)
    break
  }
  const maps = servers.map((server) => `/tmp/perf-${server.proc.child.pid}.map`)
  for (const map of maps) if (existsSync(map)) cleanMap(map)
  const charged = await charge(data, servers)
  for (const [i, { key }] of servers.entries()) {
    const total = totals[key]
    total.samples += charged[i].samples
    for (const table of ['categories', 'modules', 'functions']) {
      for (const [name, samples] of Object.entries(charged[i][table])) total[table][name] = (total[table][name] ?? 0) + samples
    }
  }
  if (!flags.keep) for (const map of maps) rmSync(map, { force: true })
}
load.child.send({ cmd: 'exit' })
if (flags.keep) console.error(`perf.data files: ${work}`)
else rmSync(work, { recursive: true, force: true })

// µs per handshake: a sample is 1/frequency s of one thread's CPU time.
const perHandshake = (samples) => samples * 1e6 / config.frequency / (config.handshakes * config.sessions)
const others = SERVERS.filter(({ key }) => key !== BASELINE)
const base = totals[BASELINE]
const lines = [
  `perf, cpu-clock at ${config.frequency} Hz with call graphs: ${config.sessions} sessions × ${config.handshakes} /${route} handshakes per server after ${config.warmup} to warm up, every server at once.${pin ? ' Servers on core 0, load generator on core 1.' : ''}${config.inlining ? '' : ' Servers run with --no-turbo-inlining.'} µs per handshake; + against ${BASELINE}.`
]
const figures = {}
for (const [table, title, limit] of [['categories', 'where', Infinity], ['modules', 'module of the innermost JavaScript frame', TOP], ['functions', 'innermost JavaScript function', TOP]]) {
  const names = new Set(SERVERS.flatMap(({ key }) => Object.keys(totals[key][table])))
  const rows = [...names].map((name) => ({ name, us: SERVERS.map(({ key }) => perHandshake(totals[key][table][name] ?? 0)) }))
  const baseAt = SERVERS.findIndex(({ key }) => key === BASELINE)
  const spread = (row) => Math.max(...row.us.map((us) => Math.abs(us - row.us[baseAt])))
  rows.sort((a, b) => spread(b) - spread(a))
  figures[table] = Object.fromEntries(rows.map((row) => [row.name, Object.fromEntries(SERVERS.map(({ key }, i) => [key, row.us[i]]))]))
  lines.push('', `| ${title} | ${SERVERS.map(({ name }) => name).join(' | ')} | ${others.map(({ name }) => `+ ${name}`).join(' | ')} |`,
    `|---|${SERVERS.map(() => '---:').join('|')}|${others.map(() => '---:').join('|')}|`)
  for (const row of rows.slice(0, limit)) {
    const extra = others.map(({ key }) => row.us[SERVERS.findIndex((server) => server.key === key)] - row.us[baseAt])
    lines.push(`| ${row.name} | ${row.us.map((us) => us.toFixed(2)).join(' | ')} | ${extra.map((us) => `${us >= 0 ? '+' : ''}${us.toFixed(2)}`).join(' | ')} |`)
  }
}
const total = SERVERS.map(({ key }) => perHandshake(totals[key].samples))
lines.push('', `All samples: ${SERVERS.map(({ name }, i) => `${name} ${total[i].toFixed(1)} µs`).join(', ')}${others.map(({ name, key }) => `; ${name} ${(totals[key].samples / base.samples).toFixed(3)} ×`).join('')}.`)
if (problems.length > 0) lines.push('', 'Problems:', ...problems.map((p) => `- ${p}`))
console.log(lines.join('\n'))
const out = writeResults({ date: new Date().toISOString(), node: process.version, config, total: Object.fromEntries(SERVERS.map(({ key }, i) => [key, total[i]])), figures, problems }, flags.out, 'perf-')
console.log(`\nwritten: ${out}`)
if (problems.length > 0) process.exitCode = 1
