// Issue 17: an app created with `http2: true` gave every upgrade a parse
// error, and nothing said why; it was then refused at registration. Issue 19
// serves WebSockets over HTTP/2: such an app now has them, and the one setup
// that cannot (@fastify/websocket registered before the gate, whose routes
// the gate cannot run over HTTP/2) fails at registration with a coded error.
import fastifyWebsocket from '@fastify/websocket'
import Fastify from 'fastify'
import t from 'tap'
import fastifyWsGate from '../../lib/index.js'
import { h2connect, h2session, nextMessage } from '../h2-helpers.js'

t.test('an http2: true app serves its WebSocket routes over HTTP/2', async (t) => {
  const app = Fastify({ http2: true })
  await app.register(fastifyWsGate)
  app.get('/ws', { websocket: true }, (socket) => { socket.send('over h2') })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const session = await h2session((app.server.address() as { port: number }).port)
  t.teardown(() => session.destroy())
  const answer = await h2connect(session, '/ws')
  t.equal(answer.status, 200)
  t.equal(await nextMessage(answer.ws!), 'over h2')
  answer.ws!.close()
})

t.test('@fastify/websocket registered before the gate on an HTTP/2 server fails with FST_WS_GATE_HTTP2_NOT_SUPPORTED', async (t) => {
  const app = Fastify({ http2: true })
  await app.register(fastifyWebsocket)
  const err = await app.register(fastifyWsGate).ready().then(() => null, (err: Error) => err)
  t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_HTTP2_NOT_SUPPORTED')
  t.equal(err?.message, '@fastify/websocket was registered before fastify-ws-gate on an HTTP/2 server: its routes could not be served over HTTP/2. Register it through fastify-ws-gate\'s `websocket` option, or pass `http2: false` to fastify-ws-gate')
  await app.close()
})

t.test('with http2: false, @fastify/websocket registered first is accepted, and nothing is advertised', async (t) => {
  const app = Fastify({ http2: true })
  await app.register(fastifyWebsocket)
  await app.register(fastifyWsGate, { http2: false })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const session = await h2session((app.server.address() as { port: number }).port)
  t.teardown(() => session.destroy())
  t.equal(session.remoteSettings.enableConnectProtocol, false)
})
