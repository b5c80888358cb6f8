// The demo behind `npm start` (run against the built package): it starts,
// prints its address, and shows each outcome it promises.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import t from 'tap'
import { connectWs, denied, opened } from './helpers.js'

t.test('npm start\'s demo accepts a good token and shows 401, 404 and 503', async (t) => {
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

  const slow = denied(await connectWs(port, '/rooms/slow?token=secret'))
  t.equal(slow.statusCode, 503)
  t.equal(slow.headers['retry-after'], '5')

  child.kill()
  await once(child, 'exit')
})
