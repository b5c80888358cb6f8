// The demo behind `npm start` (run against the built package): it starts,
// prints its address, and shows each outcome it promises, serves the browser
// page, and refuses browsers (which send an Origin) with a close frame.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import t from 'tap'
import type WebSocket from 'ws'
import { connectWs, denied, opened } from './helpers.js'

function closeOf (ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve([code, String(reason)])))
}

t.test('npm start\'s demo accepts a good token and shows 401, 404 and 503, and serves its page', async (t) => {
  const child = spawn(process.execPath, ['examples/demo.mjs'], {
    cwd: join(__dirname, '..'),
    // Without tap's NODE_OPTIONS: the demo runs the built package, uninstrumented.
    env: { ...process.env, NODE_OPTIONS: '', PORT: '0', LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => { child.kill() })
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
  t.match(out, `node examples/client.mjs 'ws://127.0.0.1:${port}/rooms/lobby?token=secret' chat.v2`)
  t.match(out, 'curl -i -N')
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

  child.kill()
  await once(child, 'exit')
})
