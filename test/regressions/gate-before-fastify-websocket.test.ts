// Issue 17, item 9: registering the gate before @fastify/websocket (which
// alphabetical autoloading does) crashed with an uncaught
// FST_ERR_DEC_ALREADY_PRESENT from deep inside @fastify/websocket, then
// timed out. It now fails with FST_WS_GATE_REGISTRATION and says what to do.
// In a child process: the error is thrown inside @fastify/websocket's own
// (callback-style) plugin, which Fastify cannot catch.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import Fastify from 'fastify'
import t from 'tap'
import fastifyWsGate from '../../lib/index.js'

t.test('the gate, then @fastify/websocket: FST_WS_GATE_REGISTRATION, which says what to do', async (t) => {
  const script = `
    const Fastify = require('fastify')
    const app = Fastify()
    process.on('uncaughtException', (err) => { console.log(JSON.stringify({ code: err.code, message: err.message })); process.exit(3) })
    app.register(require('./dist/index.js'))
    app.register(require('@fastify/websocket'))
    app.ready().then(() => { console.log('ready'); process.exit(0) }, (err) => { console.log(JSON.stringify({ rejected: err.code })); process.exit(4) })
  `
  const run = spawnSync(process.execPath, ['-e', script], { cwd: join(__dirname, '..', '..'), encoding: 'utf8', timeout: 20_000 })
  t.equal(run.status, 3, 'failed at once, not after the plugin timeout')
  t.strictSame(JSON.parse(run.stdout), {
    code: 'FST_WS_GATE_REGISTRATION',
    message: 'fastify-ws-gate must be registered once, on the root instance: @fastify/websocket was registered after it, and fastify-ws-gate registers @fastify/websocket itself: remove that registration (pass its options as fastify-ws-gate\'s `websocket` option), or register @fastify/websocket before fastify-ws-gate'
  })
})

t.test('in process: once the gate has registered @fastify/websocket, a second request decorator `ws` is refused with that error', async (t) => {
  const app = Fastify()
  await app.register(fastifyWsGate)
  t.throws(() => app.decorateRequest('ws', false), { code: 'FST_WS_GATE_REGISTRATION' })
  app.decorateRequest('other', false)
  t.ok(app.hasRequestDecorator('other'), 'other request decorators are untouched')
  await app.close()
})
