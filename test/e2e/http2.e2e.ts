// WebSockets over HTTP/2 (RFC 8441, issue 19) with real clients:
// - Chromium (Debian's, via playwright-core) over TLS: the page and its
//   WebSockets on one HTTP/2 session, each WebSocket an extended CONNECT;
// - clients that do not use the setting still get HTTP/1.1 on the same port
//   (allowHTTP1): `ws`, and Chromium when the gate's `http2: false` is given;
// - Python's h2 (Debian's python3-h2) over h2c, driven through h2client.py,
//   with WebSocket frames built by hand.
import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import type { Http2Server, Http2SecureServer } from 'node:http2'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { chromium, type Browser, type Page } from 'playwright-core'
import t from 'tap'
import WebSocket from 'ws'
import fastifyWsGate, { accept, reject, type FastifyWsGateOptions } from '../../lib/index.js'
import { CHROMIUM, PYTHON, run } from './run.js'

const WAIT = { timeout: 15_000 }
const H2CLIENT = join(__dirname, 'h2client.py')

interface Teardown { teardown (fn: () => unknown): void }

// A self-signed certificate for localhost, made once for this file.
const CERT_DIR = mkdtempSync(join(tmpdir(), 'ws-gate-h2-e2e-'))
t.teardown(() => rmSync(CERT_DIR, { recursive: true, force: true }))
const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1',
  '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  '-keyout', join(CERT_DIR, 'key.pem'), '-out', join(CERT_DIR, 'cert.pem')], { stdio: 'ignore', timeout: 20_000 })
if (made.status !== 0) throw new Error('openssl could not make a self-signed certificate')
const TLS = { key: readFileSync(join(CERT_DIR, 'key.pem')), cert: readFileSync(join(CERT_DIR, 'cert.pem')) }

/** What the server saw: HTTP/2 sessions, HTTP/1.1 upgrades, and per route what came in. */
interface Seen {
  sessions: number
  upgrades: number
  /** The page's request: its HTTP version. */
  page: string[]
  /** Each handshake that ran: `path :protocol httpVersion` (:protocol as the raw request has it, '-' when absent). */
  handshakes: string[]
  /** Each route handler that ran: `path httpVersion`. */
  handlers: string[]
  /** Close codes the server's WebSockets saw: `path code reason`. */
  closes: string[]
}

// The page: e2e.open(name, path, protocols) opens `new WebSocket('wss://localhost:PORT' + path)`
// and logs its events in e2e.events[name]: 'open <ws.protocol or (none)>[ <ws.extensions>]',
// 'message <data>', 'error', 'close <code> "<reason>" clean=<wasClean>'.
const PAGE = `<!doctype html>
<title>h2 e2e</title>
<script>
window.e2e = {
  sockets: {},
  events: {},
  open (name, path, protocols) {
    const events = this.events[name] = []
    const ws = this.sockets[name] = new WebSocket('wss://' + location.host + path, protocols)
    ws.onopen = () => events.push('open ' + (ws.protocol || '(none)') + (ws.extensions ? ' ' + ws.extensions : ''))
    ws.onerror = () => events.push('error')
    ws.onmessage = (e) => events.push('message ' + e.data)
    ws.onclose = (e) => events.push('close ' + e.code + ' ' + JSON.stringify(e.reason) + ' clean=' + e.wasClean)
  }
}
</script>
<p>WebSockets over HTTP/2</p>`

// The page's globals, as far as the functions run in the page use them (the
// project's TypeScript settings have no DOM library).
declare const e2e: {
  open (name: string, path: string, protocols: string[]): void
  sockets: Record<string, { send (data: string): void, close (code?: number, reason?: string): void }>
  events: Record<string, string[]>
}

interface H2App {
  app: FastifyInstance
  port: number
  seen: Seen
}

/**
 * An HTTP/2 app (TLS with allowHTTP1, or h2c) with the gate and these routes:
 *   GET /          an HTML page
 *   /echo          accepts (subprotocol chat when offered), says which HTTP version it came over, echoes
 *   /refused       reject(403)
 *   /bye           accepts, then the server closes with 4321 "bye"
 *   /private       401 with a reason and WWW-Authenticate unless `authorization: ok`; accepted: says "in", echoes
 */
async function startH2 (t: Teardown, tls: boolean, gate: FastifyWsGateOptions = {}): Promise<H2App> {
  const app = (tls
    ? Fastify({ logger: false, http2: true, https: { allowHTTP1: true, ...TLS } })
    : Fastify({ logger: false, http2: true })) as unknown as FastifyInstance
  const seen: Seen = { sessions: 0, upgrades: 0, page: [], handshakes: [], handlers: [], closes: [] }
  const server = app.server as unknown as Http2Server | Http2SecureServer
  server.on('session', () => { seen.sessions++ })
  app.server.on('upgrade', () => { seen.upgrades++ })
  await app.register(fastifyWsGate, gate)

  const record = (path: string, request: { raw: { httpVersion: string, headers: IncomingMessage['headers'] } }): void => {
    const { raw } = request
    seen.handshakes.push(`${path} ${String(raw.headers[':protocol'] ?? '-')} ${raw.httpVersion}`)
  }

  app.get('/', async (request, reply) => {
    seen.page.push(request.raw.httpVersion)
    return reply.type('text/html; charset=utf-8').send(PAGE)
  })
  app.get('/echo', {
    websocket: true,
    handshake: (request, { protocols }) => {
      record('/echo', request)
      return accept({ protocol: protocols.includes('chat') ? 'chat' : undefined })
    }
  }, (socket, request) => {
    seen.handlers.push(`/echo ${request.raw.httpVersion}`)
    socket.send(`welcome over HTTP/${request.raw.httpVersion}`)
    socket.on('message', (data) => socket.send(`echo: ${String(data)}`))
    socket.on('close', (code, reason) => { seen.closes.push(`/echo ${code} ${String(reason)}`) })
  })
  app.get('/refused', {
    websocket: true,
    handshake: (request) => {
      record('/refused', request)
      return reject(403)
    }
  }, (socket) => { socket.send('never') })
  app.get('/bye', {
    websocket: true,
    handshake: (request) => {
      record('/bye', request)
      return accept()
    }
  }, (socket, request) => {
    seen.handlers.push(`/bye ${request.raw.httpVersion}`)
    socket.close(4321, 'bye')
  })
  app.get('/private', {
    websocket: true,
    handshake: (request) => {
      record('/private', request)
      return request.headers.authorization === 'ok'
        ? accept()
        : reject(401, 'Who are you?', { headers: { 'www-authenticate': 'Bearer realm="e2e"' } })
    }
  }, (socket, request) => {
    seen.handlers.push(`/private ${request.raw.httpVersion}`)
    socket.send('in')
    socket.on('message', (data) => socket.send(`echo: ${String(data)}`))
    socket.on('close', (code, reason) => { seen.closes.push(`/private ${code} ${String(reason)}`) })
  })

  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { app, port: address.port, seen }
}

/** Waits (bounded) until a condition on the server's side holds. */
async function until (what: string, condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/* ------------------------------------------------------------------------ */
/* Python h2 over h2c                                                        */
/* ------------------------------------------------------------------------ */

interface PyFrame { fin: boolean, rsv: number, opcode: number, masked: boolean, data?: string, code?: number | null, reason?: string }
interface PyStream {
  stream: number
  status: number | null
  headers: Array<[string, string]>
  body: string
  frames: PyFrame[]
  /** StreamEnded and StreamReset events, in order: 'end_stream', 'reset <code>'. */
  ended: string[]
}
interface PyResult {
  h2: string
  settings?: Record<string, number>
  streams: PyStream[]
  goaway?: number | null
  error?: string
}

t.test('Python h2 over h2c: the setting, an extended CONNECT with hand-made frames, a refusal, and the connection living on', async (t) => {
  const { port, seen, app } = await startH2(t, false)
  const { code, stdout, stderr } = await run(PYTHON, [H2CLIENT, String(port)])
  t.equal(code, 0, stderr)
  const result = JSON.parse(stdout.toString('utf8')) as PyResult
  t.equal(result.error, undefined, 'the script ran to its end')
  t.equal(result.h2, '4.1.0', 'Debian\'s python3-h2')
  t.equal(result.settings?.ENABLE_CONNECT_PROTOCOL, 1, 'the server\'s first SETTINGS frame has ENABLE_CONNECT_PROTOCOL=1')
  const text = (data: string): PyFrame => ({ fin: true, rsv: 0, opcode: 1, masked: false, data })
  const closing: PyFrame = { fin: true, rsv: 0, opcode: 8, masked: false, code: 1000, reason: 'done' }
  const body = JSON.stringify({ statusCode: 401, error: 'Unauthorized', message: 'Who are you?' })
  t.strictSame(result.streams, [
    {
      // Accepted: 200 with the subprotocol; the server's frames are unmasked; our
      // masked frame came back as an echo, before and after the refusal.
      stream: 1,
      status: 200,
      headers: [[':status', '200'], ['sec-websocket-protocol', 'chat']],
      body: '',
      frames: [text('welcome over HTTP/2.0'), text('echo: hello over h2'), text('echo: still here'), closing],
      // The server ends its side of the stream after its close frame.
      ended: ['end_stream']
    },
    {
      // Refused: an HTTP answer on its stream, ended, then our side closed
      // with RST_STREAM NO_ERROR; the connection lives on.
      stream: 3,
      status: 401,
      headers: [[':status', '401'], ['www-authenticate', 'Bearer realm="e2e"'],
        ['content-type', 'application/json; charset=utf-8'], ['content-length', String(Buffer.byteLength(body))]],
      body,
      frames: [],
      ended: ['end_stream', 'reset 0']
    },
    {
      stream: 5,
      status: 200,
      headers: [[':status', '200']],
      body: '',
      frames: [text('in'), text('echo: second stream'), closing],
      ended: ['end_stream']
    }
  ])
  t.equal(result.goaway, null, 'no GOAWAY from the server')
  t.strictSame(seen.handshakes, ['/echo websocket 2.0', '/private websocket 2.0', '/private websocket 2.0'])
  t.strictSame(seen.handlers, ['/echo 2.0', '/private 2.0'])
  await until('the server to see both closes', () => seen.closes.length === 2)
  t.strictSame([...seen.closes].sort(), ['/echo 1000 done', '/private 1000 done'])
  t.equal(seen.sessions, 1, 'one HTTP/2 session')
  t.equal(seen.upgrades, 0, 'no HTTP/1.1 upgrade')
  t.equal(app.wsGate.pending, 0)
})

/* ------------------------------------------------------------------------ */
/* Chromium                                                                  */
/* ------------------------------------------------------------------------ */

async function launch (t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // We run as root (no sandbox), headless, and talk to nothing but loopback:
    // localhost is 127.0.0.1 (where the app listens), not ::1 first.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--ignore-certificate-errors',
      '--host-resolver-rules=MAP localhost 127.0.0.1']
  })
  t.teardown(() => browser.close())
  return browser
}

/** Opens a WebSocket in the page (by name). */
async function open (page: Page, name: string, path: string, protocols: string[] = []): Promise<void> {
  await page.evaluate(([name, path, protocols]) => { e2e.open(name, path, protocols) }, [name, path, protocols] as const)
}

/** The events of a page's WebSocket once it has at least `count`. */
async function events (page: Page, name: string, count: number): Promise<string[]> {
  await page.waitForFunction(([name, count]) => (e2e.events[name]?.length ?? 0) >= count, [name, count] as const, WAIT)
  return page.evaluate((name) => [...e2e.events[name]], name)
}

async function send (page: Page, name: string, data: string): Promise<void> {
  await page.evaluate(([name, data]) => { e2e.sockets[name].send(data) }, [name, data] as const)
}

t.test('Chromium over TLS: the page and its WebSockets share one HTTP/2 session, each WebSocket an extended CONNECT', async (t) => {
  const { port, seen, app } = await startH2(t, true)
  const tls = { connections: 0 }
  app.server.on('secureConnection', () => { tls.connections++ })
  const browser = await launch(t)
  const page = await browser.newPage()
  const messages: string[] = []
  page.on('console', (message) => messages.push(message.text()))
  const response = await page.goto(`https://localhost:${port}/`)
  t.equal(response?.status(), 200)
  t.equal(await page.title(), 'h2 e2e')
  t.strictSame(seen.page, ['2.0'], 'the page came over HTTP/2')

  await open(page, 'a', '/echo', ['chat', 'other'])
  t.strictSame(await events(page, 'a', 2), ['open chat', 'message welcome over HTTP/2.0'], 'the accepted subprotocol is the page\'s ws.protocol')
  await open(page, 'b', '/echo')
  t.strictSame(await events(page, 'b', 2), ['open (none)', 'message welcome over HTTP/2.0'])
  await send(page, 'a', 'from a')
  await send(page, 'b', 'from b')
  t.strictSame(await events(page, 'a', 3), ['open chat', 'message welcome over HTTP/2.0', 'message echo: from a'])
  t.strictSame(await events(page, 'b', 3), ['open (none)', 'message welcome over HTTP/2.0', 'message echo: from b'])

  // A refusal is an HTTP answer on its own stream: the page only sees 1006.
  await open(page, 'refused', '/refused')
  t.strictSame(await events(page, 'refused', 2), ['error', 'close 1006 "" clean=false'])
  // Only the console (devtools) says what the answer was.
  await until('the console line', () => messages.some((line) => line.includes('/refused')))
  t.strictSame(messages.filter((line) => line.startsWith('WebSocket')),
    [`WebSocket connection to 'wss://localhost:${port}/refused' failed: Error during WebSocket handshake: Unexpected response code: 403`])
  // The others, on the same session, live on.
  await send(page, 'a', 'after the refusal')
  await send(page, 'b', 'after the refusal')
  t.strictSame((await events(page, 'a', 4)).slice(3), ['message echo: after the refusal'])
  t.strictSame((await events(page, 'b', 4)).slice(3), ['message echo: after the refusal'])

  // A close code and reason from the server reach the page.
  await open(page, 'bye', '/bye')
  t.strictSame(await events(page, 'bye', 2), ['open (none)', 'close 4321 "bye" clean=true'])

  // And the page's close reaches the server.
  await page.evaluate(() => { e2e.sockets.a.close(1000, 'page done'); e2e.sockets.b.close(4000, 'b done') })
  t.strictSame((await events(page, 'a', 5)).slice(4), ['close 1000 "page done" clean=true'])
  t.strictSame((await events(page, 'b', 5)).slice(4), ['close 4000 "b done" clean=true'])
  await until('the server to see both closes', () => seen.closes.length === 2)
  t.strictSame([...seen.closes].sort(), ['/echo 1000 page done', '/echo 4000 b done'])

  t.strictSame(seen.handshakes, ['/echo websocket 2.0', '/echo websocket 2.0', '/refused websocket 2.0', '/bye websocket 2.0'],
    'each WebSocket came as an extended CONNECT (:protocol websocket) over HTTP/2')
  t.strictSame(seen.handlers, ['/echo 2.0', '/echo 2.0', '/bye 2.0'])
  t.equal(seen.upgrades, 0, 'no HTTP/1.1 upgrade')
  t.equal(seen.sessions, 1, 'one HTTP/2 session')
  t.equal(tls.connections, 1, 'one TLS connection')
  t.equal(app.wsGate.pending, 0)
})

/* ------------------------------------------------------------------------ */
/* Clients that do not use the setting: HTTP/1.1 on the same port            */
/* ------------------------------------------------------------------------ */

interface WsResult {
  status: number
  httpVersion: string
  headers: IncomingMessage['headers']
  body: string
  ws?: WebSocket
  protocol?: string
  first?: string
}

/** `ws` over wss:// (HTTP/1.1 always; the certificate is not verified): the 101 and the first message, or the denial with its body. */
function wsConnect (port: number, path: string, protocols: string[] = []): Promise<WsResult> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}${path}`, protocols, { rejectUnauthorized: false })
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`no answer on ${path} within 5 s`)) }, 5000)
    let upgrade: IncomingMessage | undefined
    ws.on('upgrade', (res) => { upgrade = res })
    ws.once('message', (data) => {
      clearTimeout(timer)
      const res = upgrade as IncomingMessage
      resolve({ status: res.statusCode as number, httpVersion: res.httpVersion, headers: res.headers, body: '', ws, protocol: ws.protocol, first: String(data) })
    })
    ws.on('error', (err) => { clearTimeout(timer); reject(err) })
    ws.on('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => {
        clearTimeout(timer)
        resolve({ status: res.statusCode as number, httpVersion: res.httpVersion, headers: res.headers, body })
      })
    })
  })
}

/** Headers without the date. */
function dated (headers: IncomingMessage['headers']): IncomingMessage['headers'] {
  const { date, ...rest } = headers
  return rest
}

t.test('ws (HTTP/1.1 only, no ALPN) on the same TLS port gets 101 upgrades and HTTP/1.1 refusals', async (t) => {
  const { port, seen, app } = await startH2(t, true)
  const echo = await wsConnect(port, '/echo', ['chat'])
  t.equal(echo.status, 101)
  t.equal(echo.httpVersion, '1.1')
  t.strictSame({ ...echo.headers, 'sec-websocket-accept': '<accept>' }, {
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-accept': '<accept>',
    'sec-websocket-protocol': 'chat'
  })
  t.equal(echo.protocol, 'chat')
  t.equal(echo.first, 'welcome over HTTP/1.1')
  const ws = echo.ws as WebSocket
  ws.send('from ws')
  const [echoed] = await once(ws, 'message') as [Buffer]
  t.equal(String(echoed), 'echo: from ws')

  const refused = await wsConnect(port, '/refused')
  t.strictSame({ status: refused.status, httpVersion: refused.httpVersion, headers: dated(refused.headers), body: refused.body },
    { status: 403, httpVersion: '1.1', headers: { 'content-length': '0', connection: 'close' }, body: '' })
  const body = JSON.stringify({ statusCode: 401, error: 'Unauthorized', message: 'Who are you?' })
  const unauthorized = await wsConnect(port, '/private')
  t.strictSame({ status: unauthorized.status, httpVersion: unauthorized.httpVersion, headers: dated(unauthorized.headers), body: unauthorized.body }, {
    status: 401,
    httpVersion: '1.1',
    headers: {
      'www-authenticate': 'Bearer realm="e2e"',
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      connection: 'close'
    },
    body
  })
  // The first connection outlived the refusals (they were on their own connections).
  ws.send('still here')
  const [again] = await once(ws, 'message') as [Buffer]
  t.equal(String(again), 'echo: still here')
  ws.close(1000, 'ws done')
  await once(ws, 'close')
  await until('the server to see the close', () => seen.closes.length === 1)
  t.strictSame(seen.closes, ['/echo 1000 ws done'])

  t.strictSame(seen.handshakes, ['/echo - 1.1', '/refused - 1.1', '/private - 1.1'], 'HTTP/1.1 handshakes (no :protocol)')
  t.strictSame(seen.handlers, ['/echo 1.1'])
  t.equal(seen.upgrades, 3, 'each an HTTP/1.1 upgrade')
  t.equal(seen.sessions, 0, 'no HTTP/2 session')
  t.equal(app.wsGate.pending, 0)
})

t.test('Chromium with the gate\'s http2: false: the page over HTTP/2, its WebSockets over HTTP/1.1 upgrades', async (t) => {
  const { port, seen, app } = await startH2(t, true, { http2: false })
  const tls = { connections: 0 }
  app.server.on('secureConnection', () => { tls.connections++ })
  const browser = await launch(t)
  const page = await browser.newPage()
  const messages: string[] = []
  page.on('console', (message) => messages.push(message.text()))
  const response = await page.goto(`https://localhost:${port}/`)
  t.equal(response?.status(), 200)
  t.strictSame(seen.page, ['2.0'], 'the page came over HTTP/2')

  await open(page, 'a', '/echo', ['chat', 'other'])
  t.strictSame(await events(page, 'a', 2), ['open chat', 'message welcome over HTTP/1.1'])
  await open(page, 'refused', '/refused')
  t.strictSame(await events(page, 'refused', 2), ['error', 'close 1006 "" clean=false'])
  await until('the console line', () => messages.some((line) => line.includes('/refused')))
  t.strictSame(messages.filter((line) => line.startsWith('WebSocket')),
    [`WebSocket connection to 'wss://localhost:${port}/refused' failed: Error during WebSocket handshake: Unexpected response code: 403`])
  await send(page, 'a', 'after the refusal')
  t.strictSame((await events(page, 'a', 3)).slice(2), ['message echo: after the refusal'])
  await open(page, 'bye', '/bye')
  t.strictSame(await events(page, 'bye', 2), ['open (none)', 'close 4321 "bye" clean=true'])
  await page.evaluate(() => { e2e.sockets.a.close(1000, 'page done') })
  t.strictSame((await events(page, 'a', 4)).slice(3), ['close 1000 "page done" clean=true'])
  await until('the server to see the close', () => seen.closes.length === 1)
  t.strictSame(seen.closes, ['/echo 1000 page done'])

  t.strictSame(seen.handshakes, ['/echo - 1.1', '/refused - 1.1', '/bye - 1.1'], 'each WebSocket came as an HTTP/1.1 handshake')
  t.strictSame(seen.handlers, ['/echo 1.1', '/bye 1.1'])
  t.equal(seen.upgrades, 3, 'each an HTTP/1.1 upgrade')
  t.equal(seen.sessions, 1, 'one HTTP/2 session: the page\'s')
  t.equal(tls.connections, 4, 'TLS connections: the page\'s, and one per WebSocket')
  t.equal(app.wsGate.pending, 0)
})

t.test('Chromium over HTTP/2 with ws\'s perMessageDeflate: permessage-deflate is negotiated on the stream', async (t) => {
  const { port, seen, app } = await startH2(t, true, { websocket: { options: { perMessageDeflate: true } } })
  const browser = await launch(t)
  const page = await browser.newPage()
  await page.goto(`https://localhost:${port}/`)
  await open(page, 'a', '/echo', ['chat'])
  t.strictSame(await events(page, 'a', 2), ['open chat permessage-deflate', 'message welcome over HTTP/2.0'])
  // 64 KiB, compressible: inflated and deflated both ways.
  await page.evaluate(() => { e2e.sockets.a.send('x'.repeat(65536)) })
  const [echoed] = (await events(page, 'a', 3)).slice(2)
  t.equal(echoed, `message echo: ${'x'.repeat(65536)}`)
  await page.evaluate(() => { e2e.sockets.a.close(1000) })
  t.strictSame((await events(page, 'a', 4)).slice(3), ['close 1000 "" clean=true'])
  t.strictSame(seen.handshakes, ['/echo websocket 2.0'])
  t.equal(seen.upgrades, 0)
  t.equal(seen.sessions, 1)
  t.equal(app.wsGate.pending, 0)
})
