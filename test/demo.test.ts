// The demo behind `npm start` (run against the built package): it starts,
// prints its address, and shows each outcome it promises, serves the browser
// page, and refuses browsers (which send an Origin) with a close frame. With
// its port taken, one line naming PORT; the client it prints exits 1 when
// refused.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import type WebSocket from 'ws'
import { connectWs, denied, opened } from './helpers.js'

function closeOf (ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve([code, String(reason)])))
}

// Without tap's NODE_OPTIONS: the examples run the built package, uninstrumented.
function node (args: string[], env: NodeJS.ProcessEnv): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, args, { cwd: join(__dirname, '..'), env: { ...process.env, NODE_OPTIONS: '', ...env } })
}

// Runs an example to its end (killed after 30 s): exit code, stdout, stderr.
async function runToEnd (args: string[], env: NodeJS.ProcessEnv = {}): Promise<[number | null, string, string]> {
  const child = node(args, env)
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const [code] = await once(child, 'close') as [number | null]
  clearTimeout(timer)
  return [code, stdout, stderr]
}

// Starts the demo on a free port; its port and what it printed.
async function startDemo (t: tap.Test): Promise<{ port: number, out: string }> {
  const child = node(['examples/demo.mjs'], { PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' })
  child.stderr.pipe(process.stderr)
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill()
      await once(child, 'exit')
    }
  })
  let out = ''
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start: ${out}`)), 20_000)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      out += chunk
      const match = /ws:\/\/127\.0\.0\.1:(\d+)\/rooms/.exec(out)
      if (match !== null && out.includes('Ctrl+C')) {
        clearTimeout(timer)
        resolve(Number(match[1]))
      }
    })
  })
  return { port, out }
}

t.test('npm start\'s demo accepts a good token and shows 401, 404 and 503, and serves its page', async (t) => {
  const { port, out } = await startDemo(t)
  t.match(out, `node examples/client.mjs 'ws://127.0.0.1:${port}/rooms/lobby?token=secret' chat.v2`)
  t.match(out, 'curl -i -N')
  t.match(out, '429 past 3 open per user:')
  t.match(out, `In a browser: http://127.0.0.1:${port}/ `)

  const page = await fetch(`http://127.0.0.1:${port}/`)
  t.equal(page.status, 200)
  t.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
  const html = await page.text()
  t.match(html, '<form id="connect-form">')
  for (const field of ['token', 'room', 'protocol', 'mode']) t.match(html, `<select id="${field}" name="${field}">`)
  t.match(html, '<option value="close-frame" selected>')
  t.match(html, '<option value="http">')

  const ok = opened(await connectWs(port, '/rooms/lobby?token=secret', { protocols: ['chat.v1', 'chat.v2'] }))
  t.equal(ok.protocol, 'chat.v2')
  t.equal(ok.headers['set-cookie']?.[0], 'room=lobby; Path=/; HttpOnly')
  t.equal(await ok.first, 'welcome to lobby (1 here, protocol: chat.v2)')
  ok.ws.close()

  const unauthorized = denied(await connectWs(port, '/rooms/lobby?token=wrong'))
  t.equal(unauthorized.statusCode, 401)
  t.equal(unauthorized.headers['www-authenticate'], 'Bearer realm="demo"')
  t.equal(unauthorized.body, '{"statusCode":401,"error":"Unauthorized","message":"Invalid token"}')

  const missing = denied(await connectWs(port, '/rooms/kitchen?token=secret'))
  t.equal(missing.statusCode, 404)
  t.equal(missing.body, '{"statusCode":404,"error":"Not Found","message":"No such room: kitchen"}')

  // The page's HTTP mode: the same rooms, refused with HTTP even for a browser.
  const origin = { Origin: `http://127.0.0.1:${port}` }
  const plain = denied(await connectWs(port, '/http/rooms/lobby?token=wrong', { headers: origin }))
  t.equal(plain.statusCode, 401)
  t.equal(plain.body, '{"statusCode":401,"error":"Unauthorized","message":"Invalid token"}')
  const v1 = opened(await connectWs(port, '/http/rooms/dev?token=secret', { protocols: ['chat.v1'], headers: origin }))
  t.equal(v1.protocol, 'chat.v1')
  t.equal(await v1.first, 'welcome to dev (1 here, protocol: chat.v1)')
  v1.ws.close()

  // The page's close-frame mode: /rooms/:room has rejectVia 'auto', and a
  // browser sends an Origin: a 101 (no subprotocol was offered), then 4401.
  const framed = opened(await connectWs(port, '/rooms/lobby?token=wrong', { headers: origin }))
  t.equal(framed.protocol, '')
  t.same(await closeOf(framed.ws), [4401, 'Invalid token'])
  t.same(framed.messages, [])

  const slow = denied(await connectWs(port, '/rooms/slow?token=secret'))
  t.equal(slow.statusCode, 503)
  t.equal(slow.headers['retry-after'], '5')

  // At most 3 rooms open per user, across both paths; a 4th gets 429.
  const mine = await Promise.all(['/rooms/lobby', '/rooms/dev', '/http/rooms/dev'].map((path) => connectWs(port, `${path}?token=secret&user=ann`)))
  t.same(mine.map((outcome) => outcome.accepted), [true, true, true])
  const fourth = denied(await connectWs(port, '/rooms/lobby?token=secret&user=ann'))
  t.equal(fourth.statusCode, 429)
  t.equal(fourth.headers['retry-after'], '10')
  t.equal(fourth.body, '{"statusCode":429,"code":"FST_WS_GATE_CONNECTION_LIMIT","error":"Too Many Requests","message":"Too many open connections; try again later"}')
  t.equal(opened(await connectWs(port, '/rooms/lobby?token=secret&user=bob')).accepted, true, 'another user has places of their own')
  for (const outcome of mine) opened(outcome).ws.close()
})

t.test('npm start with its port taken: one line on stderr naming PORT, exit code 1', async (t) => {
  const taken = createServer()
  taken.listen(0, '127.0.0.1')
  await once(taken, 'listening')
  t.teardown(() => { taken.close() })
  const { port } = taken.address() as AddressInfo
  // The default log level, as a user runs it.
  const [code, stdout, stderr] = await runToEnd(['examples/demo.mjs'], { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: undefined })
  t.equal(code, 1)
  t.equal(stdout, '')
  t.equal(stderr, `fastify-ws-gate demo: 127.0.0.1:${port} is already in use; set the PORT environment variable to another port (PORT=0 picks a free one): PORT=0 npm start\n`)
})

t.test('npm start with a PORT that is not a port number: one line on stderr, exit code 1', async (t) => {
  const [code, stdout, stderr] = await runToEnd(['examples/demo.mjs'], { PORT: '3000x', LOG_LEVEL: undefined })
  t.equal(code, 1)
  t.equal(stdout, '')
  t.equal(stderr, 'fastify-ws-gate demo: PORT must be a port number from 0 to 65535, not "3000x"\n')
})

t.test('examples/client.mjs exits 0 when its connection opens, 1 when its handshake is refused', async (t) => {
  const { port } = await startDemo(t)
  const client = (path: string, ...protocols: string[]) => runToEnd(['examples/client.mjs', `ws://127.0.0.1:${port}${path}`, ...protocols])

  const [okCode, okOut, okErr] = await client('/rooms/lobby?token=secret', 'chat.v2')
  t.equal(okCode, 0)
  t.match(okOut, /^HTTP 101 Switching Protocols /)
  t.ok(okOut.split('\n').includes('open, subprotocol: chat.v2'), okOut)
  t.ok(okOut.split('\n').includes('message: welcome to lobby (1 here, protocol: chat.v2)'), okOut)
  t.equal(okErr, '')

  const [badCode, badOut, badErr] = await client('/rooms/lobby?token=wrong')
  t.equal(badCode, 1)
  t.match(badOut, /^HTTP 401 Unauthorized /)
  t.ok(badOut.split('\n').includes('body: {"statusCode":401,"error":"Unauthorized","message":"Invalid token"}'), badOut)
  t.equal(badErr, '')

  const [missingCode, missingOut] = await client('/rooms/kitchen?token=secret')
  t.equal(missingCode, 1)
  t.match(missingOut, /^HTTP 404 Not Found /)
})
