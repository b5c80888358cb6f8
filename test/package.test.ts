// The package as users get it from the registry: `npm pack` of the dist/ that
// `npm test` built (scripts off: a test never rebuilds dist/, other test files
// read it), its file list, the links in its markdown, the public types it
// declares, and the README's Usage example compiled (strict) and run in scratch
// apps that install the tarball: ESM and CommonJS under nodenext and node16,
// and `moduleResolution: bundler`. Also `npm pack` with its scripts, on a copy
// of the sources with no dist/, as in a fresh clone.
//
// The scratch apps install the tarball the way npm lays it out, offline: the
// tarball unpacked as node_modules/fastify-ws-gate, and next to it links to
// this repository's installed copies of exactly the packed package.json's
// dependencies, plus what an app brings itself (fastify, @types/node).
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, posix } from 'node:path'
import t from 'tap'
import ts from 'typescript'
import WebSocket from 'ws'

const ROOT = join(__dirname, '..')
const REPOSITORY = 'https://github.com/fastify-ws-gate/fastify-ws-gate'
const TSC = require.resolve('typescript/bin/tsc')

// The public surface: the values (besides the default export) and the types.
const VALUES = ['HANDSHAKE_CHANNEL', 'accept', 'asgi', 'errors', 'fastifyWsGate', 'memoryLimitStore', 'redisLimitStore', 'reject']
const TYPES = [
  'AcceptDecision', 'AcceptOptions', 'AcquireResult', 'AsgiApp', 'AsgiHeaders', 'AsgiOptions', 'AsgiReceive', 'AsgiReceiveMessage',
  'AsgiRouteOptions', 'AsgiSend', 'AsgiSendMessage', 'Bytes', 'ConnectionLimit', 'ConnectionLimitsOptions', 'DenialBody', 'FastifyWsGateOptions', 'HandshakeContext',
  'HandshakeDecision', 'HandshakeEvent', 'HandshakeHandler', 'HeadersInput', 'InjectHandshakeOptions', 'InjectedAccept',
  'InjectedDenial', 'InjectedHandshake', 'LimitRequest', 'LimitStore', 'MemoryLimitStoreOptions', 'RedisLimitStoreOptions', 'RejectDecision', 'RejectOptions', 'RejectVia', 'WebSocketAcceptEvent',
  'WebSocketCloseEvent', 'WebSocketConnectEvent', 'WebSocketDisconnectEvent', 'WebSocketReceiveEvent',
  'WebSocketResponseBodyEvent', 'WebSocketResponseStartEvent', 'WebSocketScope', 'WebSocketSendEvent', 'WsGateStats'
]

t.setTimeout(300_000)

interface Ran { code: number | null, stdout: string, stderr: string }

// Runs a command to its end, killed after `limit` ms; without tap's
// NODE_OPTIONS, so that nothing it runs is instrumented.
function run (command: string, args: string[], cwd: string, limit = 180_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '' }
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    const timer = setTimeout(() => child.kill('SIGKILL'), limit)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

function filesUnder (dir: string, base = ''): string[] {
  return readdirSync(join(dir, base), { withFileTypes: true }).flatMap((entry) => {
    const path = posix.join(base, entry.name)
    return entry.isDirectory() ? filesUnder(dir, path) : [path]
  })
}

// The README's example, between its usage markers, as the shipped README has it.
function usageExample (): string {
  const readme = readFileSync(join(installed, 'README.md'), 'utf8')
  const match = /\n<!-- usage:start[^\n]*-->\n```ts\n([\s\S]*?)```\n<!-- usage:end -->\n/.exec(readme)
  if (match === null) throw new Error('README.md has no ```ts block between <!-- usage:start --> and <!-- usage:end -->')
  return match[1]
}

// CommonJS has no top-level await: the example's imports, then the rest of it,
// as written, in an async function.
function inFunction (example: string): string {
  const lines = example.split('\n')
  const body = lines.findIndex((line) => !line.startsWith('import '))
  return [
    ...lines.slice(0, body),
    'async function main (): Promise<void> {',
    ...lines.slice(body),
    '}',
    'main().catch((err) => { console.error(err); process.exit(1) })',
    ''
  ].join('\n')
}

const IS_ANY = 'type IsAny<T> = 0 extends 1 & T ? true : false'
const typed = (names: string[]) => `const typed: [${names.map((name) => `IsAny<${name}>`).join(', ')}] = [${names.map(() => 'false').join(', ')}]`

// Every export through import syntax (ESM, or CommonJS compiled from it): each
// is typed (not any), the plugin's options are checked, a handshake must
// return a decision.
const SURFACE = `import Fastify from 'fastify'
import gate, { ${VALUES.join(', ')}, ${TYPES.map((name) => `type ${name}`).join(', ')} } from 'fastify-ws-gate'

${IS_ANY}
${typed(['typeof gate', ...VALUES.map((name) => `typeof ${name}`), ...TYPES, "InjectedAccept['socket']"])}
const app = Fastify()
app.register(gate, { handshakeTimeout: 1000 })
app.register(fastifyWsGate, { rejectVia: 'auto' })
// @ts-expect-error handshakeTimeout is a number
app.register(gate, { handshakeTimeout: '1 s' })
// @ts-expect-error handshakeTimeout is a number
app.register(fastifyWsGate, { handshakeTimeout: '1 s' })
const handshake: HandshakeHandler = (_request, { protocols }) => protocols.length > 0 ? accept({ protocol: protocols[0] }) : reject(426)
app.get('/room', { websocket: true, handshake }, (socket) => { socket.close() })
// @ts-expect-error a handshake returns a decision
app.get('/bad', { websocket: true, handshake: () => true }, () => {})
app.get('/live', asgi(async (scope, receive, send) => {
  await receive()
  await send({ type: 'websocket.accept', subprotocol: scope.subprotocols[0] })
}))
const channel: 'fastify-ws-gate:handshake' = HANDSHAKE_CHANNEL
const error: Error & { code: string } = new errors.FST_WS_GATE_BAD_REQUEST()
export { typed, channel, error }
`

// CommonJS's own syntax: import = require(), with the types on the plugin's namespace.
const REQUIRE = `import Fastify = require('fastify')
import gate = require('fastify-ws-gate')

${IS_ANY}
${typed(['typeof gate', ...VALUES.map((name) => `typeof gate.${name}`), ...TYPES.map((name) => `gate.${name}`)])}
const app = Fastify()
app.register(gate, { handshakeTimeout: 1000 })
app.register(gate.fastifyWsGate, { rejectVia: 'auto' })
// @ts-expect-error handshakeTimeout is a number
app.register(gate, { handshakeTimeout: '1 s' })
const decision: gate.HandshakeDecision = gate.reject(401)
export = { typed, decision }
`

// require() in JavaScript, checked by TypeScript (as editors do).
const REQUIRE_JS = `// @ts-check
const Fastify = require('fastify')
const gate = require('fastify-ws-gate')
const { accept, reject, fastifyWsGate } = require('fastify-ws-gate')

const app = Fastify()
app.register(gate, { handshakeTimeout: 1000 })
app.register(fastifyWsGate, { rejectVia: 'auto' })
// @ts-expect-error handshakeTimeout is a number
app.register(gate, { handshakeTimeout: '1 s' })
/** @type {import('fastify-ws-gate').HandshakeDecision[]} */
const decisions = [accept(), reject(401)]
module.exports = { decisions }
`

interface Consumer {
  name: string
  type: 'module' | 'commonjs'
  compilerOptions: Record<string, unknown>
  /** The app's sources, given the README's example. */
  files: (usage: string) => Record<string, string>
  /** Compiled files that run the README's example. */
  runs: string[]
}

const COMMON = { target: 'es2022', strict: true, types: ['node'], outDir: 'out', rootDir: '.', noEmitOnError: true, allowJs: true, checkJs: true }
const CONSUMERS: Consumer[] = [{
  // The issue's setup, and the one that checks every declaration file (ours
  // included); the others skip library checks, as tsc --init's config does.
  name: '"type": "module", nodenext',
  type: 'module',
  compilerOptions: { ...COMMON, module: 'nodenext', moduleResolution: 'nodenext', skipLibCheck: false },
  files: (usage) => ({ 'usage.ts': usage, 'usage-cjs.cts': inFunction(usage), 'surface.ts': SURFACE, 'surface-cjs.cts': SURFACE, 'require.cts': REQUIRE, 'require-js.cjs': REQUIRE_JS }),
  runs: ['out/usage.js', 'out/usage-cjs.cjs']
}, {
  name: 'CommonJS, node16',
  type: 'commonjs',
  compilerOptions: { ...COMMON, module: 'node16', moduleResolution: 'node16', skipLibCheck: true },
  files: (usage) => ({ 'usage.ts': inFunction(usage), 'usage-esm.mts': usage, 'surface.ts': SURFACE, 'surface-esm.mts': SURFACE, 'require.ts': REQUIRE, 'require-js.js': REQUIRE_JS }),
  runs: ['out/usage.js', 'out/usage-esm.mjs']
}, {
  name: 'moduleResolution bundler',
  type: 'module',
  compilerOptions: { ...COMMON, module: 'esnext', moduleResolution: 'bundler', skipLibCheck: true },
  files: (usage) => ({ 'usage.ts': usage, 'surface.ts': SURFACE }),
  runs: ['out/usage.js']
}]

// Each outcome of the README's example that the README promises, as a ws
// client sees it, on the example run as written but on a free port.
interface Exercised { ports: number, good: Seen, unauthorized: Seen, missing: Seen, other: Seen }

interface Seen { status: number, headers: Record<string, string | string[] | undefined>, body?: string, echo?: string, error?: string }

const children = new Set<ChildProcess>()

async function exercise (cwd: string, file: string): Promise<Exercised> {
  const source = readFileSync(join(cwd, file), 'utf8')
  writeFileSync(join(cwd, file), source.replace('port: 3000', 'port: 0'))
  const child = spawn(process.execPath, [file], { cwd, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  const exited = new Promise((resolve) => child.once('exit', resolve))
  try {
    let output = ''
    const base = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${file} did not start in 60 s: ${output}`)), 60_000)
      const read = (chunk: string) => {
        output += chunk
        const match = /"msg":"Server listening at http:\/\/(127\.0\.0\.1:\d+)"/.exec(output)
        if (match !== null) {
          clearTimeout(timer)
          resolve(`ws://${match[1]}`)
        }
      }
      child.stdout.setEncoding('utf8').on('data', read)
      child.stderr.setEncoding('utf8').on('data', read)
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${file} exited (${code}): ${output}`)) })
    })
    return {
      ports: source.split('port: 3000').length - 1,
      good: await handshake(`${base}/rooms/lobby?token=secret`, ['chat.v1', 'chat.v2']),
      unauthorized: await handshake(`${base}/rooms/lobby?token=wrong`, ['chat.v2']),
      missing: await handshake(`${base}/rooms/kitchen?token=secret`, []),
      other: await handshake(`${base}/rooms/lobby?token=secret`, ['chat.v1'])
    }
  } finally {
    child.kill('SIGTERM')
    await exited
    children.delete(child)
  }
}

// One handshake with a ws client: the status and headers it saw, and the
// body of a denial, the echo of 'hello' on an open connection, or ws's error.
function handshake (url: string, protocols: string[]): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols)
    const seen: Seen = { status: 0, headers: {} }
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`no outcome for ${url} in 20 s`)) }, 20_000)
    const done = () => { clearTimeout(timer); resolve(seen) }
    ws.on('upgrade', (res) => { seen.status = res.statusCode ?? 0; seen.headers = res.headers })
    ws.on('open', () => ws.send('hello'))
    ws.on('message', (data) => { seen.echo = String(data); ws.close() })
    ws.on('close', () => { if (seen.error === undefined) done() })
    ws.on('error', (err) => { seen.error = err.message; done() })
    ws.on('unexpected-response', (_req, res) => {
      seen.status = res.statusCode ?? 0
      seen.headers = res.headers
      let body = ''
      res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk })
      res.on('end', () => { seen.body = body; done() })
    })
  })
}

// A promise that is never left rejected without a handler: what the tests
// below await, once the work that makes it, started early, is done.
type Settled<T> = { value: T } | { error: unknown }
function settle<T> (promise: Promise<T>): Promise<Settled<T>> {
  return promise.then((value) => ({ value }), (error: unknown) => ({ error }))
}
function valueOf<T> (settled: Settled<T>): T {
  if ('error' in settled) throw settled.error
  return settled.value
}

interface Built { tsc: Ran, runs: Map<string, Settled<Exercised>> }

// Compiles a scratch app, then runs each compiled example at once.
async function build (consumer: Consumer, dir: string): Promise<Built> {
  const files = consumer.files(usageExample())
  mkdirSync(dir)
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: consumer.type }))
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: consumer.compilerOptions, include: Object.keys(files) }))
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  const tsc = await run(process.execPath, [TSC, '-p', dir, '--pretty', 'false'], dir)
  const runs = new Map<string, Settled<Exercised>>()
  if (tsc.code === 0) {
    await Promise.all(consumer.runs.map(async (file) => { runs.set(file, await settle(exercise(dir, file))) }))
  }
  return { tsc, runs }
}

// As in a fresh clone: the sources without dist/ (dependencies installed);
// npm pack runs prepack, which builds.
async function packFreshCheckout (): Promise<Ran> {
  const clone = join(work, 'clone')
  for (const path of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'LICENSE', 'lib', 'docs', 'scripts']) {
    cpSync(join(ROOT, path), join(clone, path), { recursive: true })
  }
  symlinkSync(join(ROOT, 'node_modules'), join(clone, 'node_modules'), 'dir')
  return run('npm', ['pack', '--dry-run', '--json'], clone)
}

const work = mkdtempSync(join(tmpdir(), 'ws-gate-package-'))
const installed = join(work, 'node_modules', 'fastify-ws-gate')
t.teardown(() => {
  for (const child of children) child.kill('SIGKILL')
  rmSync(work, { recursive: true, force: true })
})

let packed: string[] = []
let packedJson: Record<string, any> = {}
// Started as soon as the tarball is installed, all at once: tsc and the fresh
// pack's build are most of this file's time.
const built = new Map<string, Promise<Built>>()
let freshPack: Promise<Settled<Ran>>

t.before(async () => {
  const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT)
  if (pack.code !== 0) throw new Error(`npm pack failed: ${pack.stderr}`)
  const [result] = JSON.parse(pack.stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
  packed = result.files.map((file) => file.path).sort()

  const untar = await run('tar', ['-xzf', join(work, result.filename), '-C', work], work)
  if (untar.code !== 0) throw new Error(`tar failed: ${untar.stderr}`)
  mkdirSync(join(work, 'node_modules'))
  renameSync(join(work, 'package'), installed)
  packedJson = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'))
  for (const name of [...Object.keys(packedJson.dependencies), 'fastify', '@types/node']) {
    mkdirSync(dirname(join(work, 'node_modules', name)), { recursive: true })
    symlinkSync(join(ROOT, 'node_modules', name), join(work, 'node_modules', name), 'dir')
  }

  for (const [index, consumer] of CONSUMERS.entries()) {
    built.set(consumer.name, build(consumer, join(work, `app-${index}`)))
  }
  freshPack = settle(packFreshCheckout())
})

// What a build of lib/ is, and what the tarball holds besides.
function expectedFiles (): string[] {
  const sources = filesUnder(join(ROOT, 'lib')).filter((path) => path.endsWith('.ts'))
  const built = sources.flatMap((path) => [`dist/${path.replace(/\.ts$/, '.js')}`, `dist/${path.replace(/\.ts$/, '.d.ts')}`])
  return [...built, ...docFiles(), 'LICENSE', 'README.md', 'package.json'].sort()
}

function docFiles (): string[] {
  return readdirSync(join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)
}

t.test('the tarball holds the build, the README, LICENSE and docs, and nothing else', async (t) => {
  for (const path of expectedFiles()) t.ok(packed.includes(path), `${path} is packed`)
  // A dist/ that has been built for a while may also hold the build of a
  // source file since removed (tsc does not delete; prepack empties dist/).
  t.strictSame(packed.filter((path) => !/^dist\/.+\.(?:js|d\.ts)$/.test(path)), [...docFiles(), 'LICENSE', 'README.md', 'package.json'].sort())
  t.strictSame(packed.filter((path) => /\.map$|^(test|bench|examples|lib|scripts)\//.test(path)), [])
  const mapped = packed.filter((path) => readFileSync(join(installed, path), 'utf8').includes('sourceMappingURL'))
  t.strictSame(mapped, [], 'no shipped file points at a source map')
})

t.test('npm pack on a checkout without dist/ builds it and ships it', async (t) => {
  const pack = valueOf(await freshPack)
  t.equal(pack.code, 0, pack.stderr)
  const [result] = JSON.parse(pack.stdout) as Array<{ files: Array<{ path: string }> }>
  t.strictSame(result.files.map((file) => file.path).sort(), expectedFiles())
})

t.test('package.json: what installing from the registry needs', async (t) => {
  t.equal(packedJson.main, 'dist/index.js')
  t.equal(packedJson.types, 'dist/index.d.ts')
  t.strictSame(packedJson.exports, { '.': { types: './dist/index.d.ts', default: './dist/index.js' }, './package.json': './package.json' })
  // The shipped types import ws and @fastify/websocket: their types come with the package.
  t.strictSame(Object.keys(packedJson.dependencies).sort(), ['@fastify/error', '@fastify/websocket', '@types/ws', 'fastify-plugin', 'ws'])
  t.strictSame(packedJson.repository, { type: 'git', url: `git+${REPOSITORY}.git` })
  t.equal(packedJson.homepage, `${REPOSITORY}#readme`)
  t.strictSame(packedJson.bugs, { url: `${REPOSITORY}/issues` })
  t.match(packedJson.scripts.prepack, /npm run build$/)
})

// Links as they resolve where the markdown is read (the registry's page, or
// node_modules): a relative link must name a file in the tarball; a link into
// this repository on GitHub must name a file or folder that exists here.
t.test('every relative link in the shipped markdown points at a file in the tarball', async (t) => {
  const markdown = packed.filter((path) => path.endsWith('.md'))
  t.strictSame(markdown.filter((path) => !path.startsWith('docs/')), ['README.md'])
  let relatives = 0
  for (const file of markdown) {
    const text = readFileSync(join(installed, file), 'utf8').replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '')
    const targets = [
      ...[...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((match) => match[1]),
      ...[...text.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?/gm)].map((match) => match[1]),
      ...[...text.matchAll(/\b(?:href|src)="([^"]+)"/g)].map((match) => match[1])
    ]
    for (const target of targets) {
      if (target.startsWith('#')) continue
      const path = target.replace(/[#?].*$/, '')
      const inRepo = path.startsWith(`${REPOSITORY}/`) ? /^\/(?:blob|tree)\/main\/(.+)$/.exec(path.slice(REPOSITORY.length))?.[1] : undefined
      if (inRepo !== undefined) {
        t.ok(statSync(join(ROOT, inRepo), { throwIfNoEntry: false }) !== undefined, `${file}: ${target} exists in the repository`)
      } else if (!/^[a-z][a-z0-9+.-]*:/i.test(target)) {
        relatives++
        const resolved = posix.normalize(posix.join(posix.dirname(file), decodeURIComponent(path)))
        t.ok(packed.includes(resolved), `${file}: ${target} is ${resolved}, in the tarball`)
      }
    }
  }
  t.ok(relatives > 10, `the shipped docs link each other (${relatives} relative links)`)
})

// Only dist/index.d.ts's namespace lists the public types (an `export =`
// declaration exports nothing else); every ASGI message type is public.
t.test('the shipped declarations export exactly the public surface', async (t) => {
  const parse = (path: string) => ts.createSourceFile(path, readFileSync(join(installed, path), 'utf8'), ts.ScriptTarget.ES2022)
  const index = parse('dist/index.d.ts')
  const assignment = index.statements.filter(ts.isExportAssignment)
  t.strictSame(assignment.map((node) => [node.isExportEquals, node.expression.getText(index)]), [[true, 'fastifyWsGate']])
  const exported = (node: ts.Node) => ts.canHaveModifiers(node) && ts.getModifiers(node)?.some((modifier) => modifier.kind === ts.SyntaxKind.ExportKeyword) === true
  t.strictSame(index.statements.filter((node) => ts.isExportDeclaration(node) || exported(node)), [], 'nothing else is exported')
  const namespace = index.statements.find((node): node is ts.ModuleDeclaration => ts.isModuleDeclaration(node) && node.name.text === 'fastifyWsGate')
  const body = namespace?.body
  const types = body !== undefined && ts.isModuleBlock(body) ? body.statements.map((node) => (node as ts.TypeAliasDeclaration).name.text) : []
  t.strictSame(types.sort(), TYPES)
  const asgiTypes = parse('dist/asgi/types.d.ts').statements.flatMap((node) =>
    exported(node) && (ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node)) ? [node.name.text] : [])
  t.strictSame(asgiTypes.filter((name) => !TYPES.includes(name)), [], 'dist/asgi/types.d.ts exports nothing that is not public')
})

for (const consumer of CONSUMERS) {
  t.test(`an app (${consumer.name}) compiles the README's Usage example and every export under strict, and runs the example`, async (t) => {
    const { tsc, runs } = await (built.get(consumer.name) as Promise<Built>)
    t.strictSame([tsc.code, tsc.stdout, tsc.stderr], [0, '', ''], 'tsc reports nothing')
    for (const file of consumer.runs) {
      t.test(file, async (t) => {
        const { ports, good, unauthorized, missing, other } = valueOf(runs.get(file) as Settled<Exercised>)
        t.equal(ports, 1, 'the example listens on port 3000 (run on a free port instead)')

        t.equal(good.status, 101)
        t.equal(good.headers['sec-websocket-protocol'], 'chat.v2')
        t.strictSame(good.headers['set-cookie'], ['seen=1'])
        t.equal(good.echo, 'hello', 'the connection echoes')
        t.equal(good.error, undefined)

        t.equal(unauthorized.status, 401)
        t.equal(unauthorized.headers['www-authenticate'], 'Bearer')
        t.equal(unauthorized.headers.connection, 'close')
        t.equal(unauthorized.body, '{"statusCode":401,"error":"Unauthorized","message":"Invalid token"}')

        t.equal(missing.status, 404)
        t.equal(missing.body, '{"statusCode":404,"error":"Not Found","message":"No such room"}')

        // Only other subprotocols offered: a 101 without one, which ws refuses.
        t.equal(other.status, 101)
        t.equal(other.headers['sec-websocket-protocol'], undefined)
        t.equal(other.error, 'Server sent no subprotocol')
        t.equal(other.echo, undefined)
      })
    }
  })
}
