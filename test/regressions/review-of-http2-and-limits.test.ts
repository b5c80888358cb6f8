// Found by an independent review of issues 19 and 20 before they landed:
// each test pins one defect, named in its title.
import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { accept, asgi, memoryLimitStore } from '../../lib/index.js'
import type { LimitStore } from '../../lib/limits/store.js'
import { connectWs, denied, eventually, logsAbove, opened, start } from '../helpers.js'
import { h2connect, h2session } from '../h2-helpers.js'

const H2 = { http2: true } as never

function certificate (t: Test): { key: Buffer, cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'ws-gate-h2-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
  t.equal(made.status, 0, 'openssl made a self-signed certificate')
  return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }
}

t.test('an HTTP/1.1 CONNECT on an HTTP/2 server with allowHTTP1 crashed the process; it is answered 405', async (t) => {
  const { key, cert } = certificate(t)
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true }, (socket) => { socket.send('still up') })
  }, {}, { http2: true, https: { allowHTTP1: true, key, cert } } as never)
  const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
  await once(socket, 'secureConnect')
  socket.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')
  let text = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => { text += chunk })
  await once(socket, 'close')
  const [head, body] = text.split('\r\n\r\n')
  t.equal(head.split('\r\n')[0], 'HTTP/1.1 405 Method Not Allowed')
  t.ok(head.split('\r\n').includes('Allow: GET'))
  t.equal(JSON.parse(body).code, 'FST_WS_GATE_METHOD_NOT_ALLOWED')
  const ws = new WebSocket(`wss://localhost:${port}/ws`, { rejectUnauthorized: false })
  const [message] = await once(ws, 'message') as [Buffer]
  t.equal(String(message), 'still up', 'the server is still up')
  ws.close()
})

t.test('one HTTP/2 connection could take every pending place; past 128 on one session its handshakes are shed', async (t) => {
  const { port, app } = await start(t, (app) => {
    app.get('/slow', { websocket: true, handshakeTimeout: 0, handshake: () => new Promise(() => {}) }, () => {})
    app.get('/ok', { websocket: true }, (socket) => { socket.send('ok') })
  }, {}, { http2: true, forceCloseConnections: true } as never)
  const greedy = await h2session(port)
  t.teardown(() => greedy.destroy())
  const answers = Array.from({ length: 130 }, () => h2connect(greedy, '/slow').catch(() => null))
  t.ok(await eventually(() => app.wsGate.pending === 128 && app.wsGate.shed === 2, 3000))
  const shed = (await Promise.race([Promise.all(answers.slice(128)), new Promise((resolve) => setTimeout(resolve, 2000, null))])) as Array<{ status: number, body: string }> | null
  t.same(shed?.map(({ status, body }) => [status, JSON.parse(body).message]), [
    [503, 'Too many handshakes are pending (maxPendingHandshakes is 128 on one HTTP/2 connection); try again later'],
    [503, 'Too many handshakes are pending (maxPendingHandshakes is 128 on one HTTP/2 connection); try again later']
  ])
  const other = await h2session(port)
  t.teardown(() => other.destroy())
  const fair = await h2connect(other, '/ok')
  t.equal(fair.status, 200, 'another connection still gets through')
  fair.ws!.close()
  greedy.destroy()
  t.ok(await eventually(() => app.wsGate.pending === 0, 3000), 'the session\'s count goes when its streams do')
})

t.test('a verifyClient refusal with its own Content-Type threw over HTTP/2 (two content-types); its type wins on both wires', async (t) => {
  const verifyClient = (_info: unknown, done: (ok: boolean, code: number, message: string, headers: Record<string, string>) => void): void => {
    done(false, 401, '{"error":"who"}', { 'Content-Type': 'application/json' })
  }
  const { port } = await start(t, (app) => {
    app.get('/v', { websocket: true, handshake: () => accept() }, () => {})
  }, { websocket: { options: { verifyClient } as never } }, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const answer = await h2connect(session, '/v')
  t.equal(answer.status, 401)
  t.equal(answer.headers['content-type'], 'application/json')
  t.equal(answer.body, '{"error":"who"}')
  const h1 = await start(t, (app) => {
    app.get('/v', { websocket: true, handshake: () => accept() }, () => {})
  }, { websocket: { options: { verifyClient } as never } })
  const refused = denied(await connectWs(h1.port, '/v'))
  t.equal(refused.headers['content-type'], 'application/json')
})

t.test('a second ASGI decision while the accept was being counted started a second count; it is refused', async (t) => {
  const store = memoryLimitStore()
  let release: (() => void) | undefined
  const slow: LimitStore = {
    acquire: (limits, lease, ttl) => new Promise((resolve) => { release = () => { resolve(store.acquire(limits, lease, ttl)) } }),
    release: store.release.bind(store),
    refresh: store.refresh.bind(store),
    close: store.close.bind(store)
  }
  let second: unknown
  const { port, app } = await start(t, (app) => {
    app.get('/asgi', {
      ...asgi(async (_scope, receive, send) => {
        await receive()
        await send({ type: 'websocket.accept' })
        second = await send({ type: 'websocket.close' }).then(() => 'sent', (err: Error & { code?: string }) => err.code)
        ;(release as () => void)()
        await receive()
      }),
      connectionLimit: { key: () => 'k', max: 1 }
    })
  }, { connectionLimits: { store: slow } })
  const open = opened(await connectWs(port, '/asgi'))
  t.equal(second, 'FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE')
  t.equal(app.wsGate.leases, 1)
  open.ws.close()
})

t.test('an answer that threw after the limits were counted was an unhandled rejection; the connection is cut, counted out and its lease released', async (t) => {
  const { port, app, logs } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept(), connectionLimit: { key: () => 'k', max: 1 } }, () => {})
  }, { websocket: { options: { verifyClient: () => { throw new Error('verifyClient bug') } } } })
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  const [err] = await once(ws, 'error') as [Error]
  t.match(err.message, /socket hang up|ECONNRESET/)
  t.ok(await eventually(() => app.wsGate.pending === 0 && app.wsGate.leases === 0))
  t.ok(logsAbove(logs, 40).some((line) => (line.err as { message?: string } | undefined)?.message === 'verifyClient bug'))
})

t.test('a route without a handshake under rejectVia close-frame answered a full limit with HTTP 429; it closes with 4429', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, connectionLimit: { key: () => 'k', max: 0 } }, () => {})
  }, { rejectVia: 'close-frame' })
  const framed = opened(await connectWs(port, '/ws'))
  const [code] = await once(framed.ws, 'close') as [number]
  t.equal(code, 4429)
})

t.test('a WebSocket handler over HTTP/2 returning a thenable that rejects: its error reaches the errorHandler, as under @fastify/websocket', async (t) => {
  const seen: string[] = []
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true }, () => ({ catch (onRejected: (err: Error) => void) { onRejected(new Error('thenable')) } }) as never)
  }, { websocket: { errorHandler: (error, socket) => { seen.push(error.message); socket.terminate() } } }, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const answer = await h2connect(session, '/ws')
  await once(answer.ws!, 'close')
  t.same(seen, ['thenable'])
})

t.test('a hook\'s reply to an HTTP/2 handshake read the status message, and Node warned; no warning now', async (t) => {
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning.name) }
  process.on('warning', onWarning)
  t.teardown(() => { process.removeListener('warning', onWarning) })
  const { port } = await start(t, (app) => {
    app.addHook('onRequest', async (_request, reply) => { await reply.code(403).send({ no: true }) })
    app.get('/ws', { websocket: true }, () => {})
  }, {}, H2)
  const session = await h2session(port)
  t.teardown(() => session.destroy())
  const answer = await h2connect(session, '/ws')
  t.equal(answer.status, 403)
  await new Promise((resolve) => setImmediate(resolve))
  t.same(warnings, [])
})
