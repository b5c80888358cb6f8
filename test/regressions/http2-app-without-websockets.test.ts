// Issue 17: an app created with `http2: true` gave every upgrade a parse
// error, and nothing said why. Until the gate serves WebSockets over HTTP/2,
// registering it there fails with a coded error that says so.
import Fastify from 'fastify'
import t from 'tap'
import fastifyWsGate from '../../lib/index.js'

t.test('http2: true fails at registration with FST_WS_GATE_HTTP2_NOT_SUPPORTED', async (t) => {
  const app = Fastify({ http2: true })
  const err = await app.register(fastifyWsGate).ready().then(() => null, (err: Error) => err)
  t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_HTTP2_NOT_SUPPORTED')
  t.equal(err?.message, 'fastify-ws-gate does not serve WebSockets over HTTP/2 yet: create the app without http2: true (an HTTP/2 server never emits the upgrades it gates)')
  await app.close()
})
