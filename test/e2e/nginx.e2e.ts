// nginx (Debian's nginx-light) as a reverse proxy in front of the app, with
// the standard WebSocket proxy configuration (https://nginx.org/en/docs/http/websocket.html):
// proxy_http_version 1.1 and Upgrade/Connection passed on through a map. It is
// started by this test on a free loopback port, with its own prefix, config,
// pid file, logs and temp paths in a temporary directory, in the foreground
// and without a master process (so it needs no user switch as root), and
// stopped in teardown.
//
// What must reach the client unchanged: status line, body, and every
// end-to-end header (WWW-Authenticate, Retry-After, Set-Cookie, Content-Type,
// Content-Length, Sec-WebSocket-*). What nginx changes, as a proxy must or may:
// the hop-by-hop Connection header (keep-alive toward the client instead of
// close; "upgrade" on the 101), its own Server and Date, and the order
// (its headers first).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startApp } from './app.js'
import { ACCEPTED, REFUSED, TIMED_OUT, TOO_MANY, UNAUTHORIZED, type Expected } from './expected.js'
import { NGINX, run } from './run.js'
import { freePort, upgrade, type WireResponse } from './wire.js'

interface Teardown { teardown (fn: () => unknown): void }

function config (dir: string, port: number, single: number, pair: [number, number]): string {
  const proxy = `
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;`
  return `# Written by test/e2e/nginx.e2e.ts
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log notice;
events { worker_connections 256; }
http {
  access_log ${dir}/logs/access.log;
  client_body_temp_path ${dir}/tmp/client_body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;

  map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
  }
  upstream single { server 127.0.0.1:${single}; }
  upstream pair { server 127.0.0.1:${pair[0]}; server 127.0.0.1:${pair[1]}; }

  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://single;${proxy}
    }
    location /pair/ {
      proxy_pass http://pair/;${proxy}
    }
  }
}
`
}

/** Whether something accepts connections on the port. */
function listening (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

/** Starts nginx in front of the apps; resolves to its port. Retries (3 times) if the free port was taken meanwhile. */
async function startNginx (t: Teardown, single: number, pair: [number, number]): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'fastify-ws-gate-nginx-'))
  mkdirSync(join(dir, 'logs'))
  mkdirSync(join(dir, 'tmp'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const errorLog = join(dir, 'logs', 'error.log')
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort()
    writeFileSync(join(dir, 'nginx.conf'), config(dir, port, single, pair))
    const child = spawn(NGINX, ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', errorLog], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (chunk: string) => { stderr += chunk })
    for (let i = 0; i < 100 && child.exitCode === null; i++) {
      if (await listening(port)) {
        t.teardown(() => stop(child))
        return port
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await stop(child)
    const log = `${stderr}${readFileSync(errorLog, 'utf8')}`
    if (!log.includes('Address already in use')) throw new Error(`nginx did not start: ${log}`)
  }
  throw new Error('nginx found no free port in 3 attempts')
}

/** The lines nginx adds or rewrites, given its version; then the app's end-to-end headers. */
function throughNginx (expected: Expected, server: string, connection: string): Expected {
  const own = expected.head.filter((line) => !/^(date|connection): /i.test(line))
  // nginx writes Content-Type and Content-Length in its own place, before Connection.
  const framing = own.filter((line) => /^content-(type|length): /i.test(line))
  const rest = own.filter((line) => !/^content-(type|length): /i.test(line))
  const upgrade = rest.filter((line) => /^upgrade: /i.test(line))
  return {
    statusLine: expected.statusLine,
    head: [`Server: ${server}`, 'Date: <date>', ...framing, `Connection: ${connection}`, ...upgrade,
      ...rest.filter((line) => !/^upgrade: /i.test(line))],
    body: expected.body
  }
}

/** End-to-end headers: without the hop-by-hop Connection, and the proxy's Server and Date; sorted. */
function endToEnd (head: string[]): string[] {
  return head.filter((line) => !/^(connection|server|date): /i.test(line)).sort()
}

t.test('through nginx', async (t) => {
  const version = await run(NGINX, ['-v'])
  const server = /nginx version: (nginx\/\S+)/.exec(version.stderr)?.[1]
  if (server === undefined) throw new Error(`nginx -v: ${version.stderr}`)
  const a = await startApp(t, 'a')
  const b = await startApp(t, 'b')
  const port = await startNginx(t, a.port, [a.port, b.port])

  /** The same request direct and through nginx. */
  async function both (path: string, headers: Record<string, string> = {}): Promise<[WireResponse, WireResponse]> {
    return [await upgrade(a.port, path, headers), await upgrade(port, path, headers)]
  }

  function sameEndToEnd (t: tap.Test, direct: WireResponse, proxied: WireResponse): void {
    t.equal(proxied.statusLine, direct.statusLine, 'status line unchanged')
    t.strictSame(endToEnd(proxied.head), endToEnd(direct.head), 'end-to-end headers unchanged')
    t.equal(proxied.body, direct.body, 'body unchanged')
  }

  // Denials from the handshake, a hook and the timeout: each reaches the client as the server sent it.
  for (const [name, path, sent] of [
    ['401 with WWW-Authenticate (and Set-Cookie)', '/http/rooms/lobby?token=wrong', UNAUTHORIZED],
    ['429 with Retry-After', '/http/rooms/busy?token=secret', TOO_MANY],
    ['503 from the handshake timeout', '/http/rooms/slow?token=secret', TIMED_OUT]
  ] as const) {
    t.test(`${name} reaches the client unchanged`, async (t) => {
      const [direct, proxied] = await both(path)
      t.strictSame([direct.statusLine, direct.head, direct.body], [sent.statusLine, sent.head, sent.body])
      const expected = throughNginx(sent, server, 'keep-alive')
      t.strictSame([proxied.statusLine, proxied.head, proxied.body], [expected.statusLine, expected.head, expected.body])
      sameEndToEnd(t, direct, proxied)
    })
  }

  t.test('101 with the chosen subprotocol and Set-Cookie, then the frames, unchanged', async (t) => {
    const offer = { 'Sec-WebSocket-Protocol': 'chat.v1, chat.v2' }
    const [direct, proxied] = await both('/http/rooms/lobby?token=secret', offer)
    t.strictSame(direct.head, ACCEPTED.head)
    const expected = throughNginx(ACCEPTED, server, 'upgrade')
    t.strictSame([proxied.statusLine, proxied.head], [expected.statusLine, expected.head])
    sameEndToEnd(t, direct, proxied)
    t.strictSame(proxied.frames.map(({ opcode, payload }) => [opcode, String(payload)]), [[1, 'welcome to lobby from a (protocol: chat.v2)']])
    t.strictSame(proxied.frames, direct.frames)
  })

  t.test('close-frame refusals pass through: the 101, then code 4401 and its reason', async (t) => {
    const offer = { 'Sec-WebSocket-Protocol': 'chat.v1, chat.v2' }
    for (const [path, headers] of [
      ['/close/rooms/lobby?token=wrong', offer],
      ['/auto/rooms/lobby?token=wrong', { ...offer, Origin: 'http://example.test' }]
    ] as const) {
      const [direct, proxied] = await both(path, headers)
      t.strictSame(direct.head, REFUSED.head, path)
      const expected = throughNginx(REFUSED, server, 'upgrade')
      t.strictSame([proxied.statusLine, proxied.head], [expected.statusLine, expected.head], path)
      sameEndToEnd(t, direct, proxied)
      t.strictSame(proxied.close, [4401, 'Invalid token'], path)
      t.strictSame(proxied.frames, direct.frames, path)
    }
  })

  t.test('rejectVia auto behind nginx: no Origin, HTTP 401', async (t) => {
    const [direct, proxied] = await both('/auto/rooms/lobby?token=wrong')
    t.equal(direct.statusLine, 'HTTP/1.1 401 Unauthorized')
    sameEndToEnd(t, direct, proxied)
  })

  t.test('two app instances behind one upstream both serve', async (t) => {
    const seen = new Set<string>()
    for (let i = 0; i < 10 && seen.size < 2; i++) {
      const answer = await upgrade(port, '/pair/http/rooms/lobby?token=secret', { 'Sec-WebSocket-Protocol': 'chat.v2' })
      t.equal(answer.statusLine, 'HTTP/1.1 101 Switching Protocols')
      const welcome = String(answer.frames[0]?.payload)
      const instance = /^welcome to lobby from (\w+) \(protocol: chat\.v2\)$/.exec(welcome)?.[1]
      if (instance === undefined) throw new Error(`unexpected welcome: ${welcome}`)
      seen.add(instance)
    }
    t.strictSame([...seen].sort(), ['a', 'b'])
  })
})
