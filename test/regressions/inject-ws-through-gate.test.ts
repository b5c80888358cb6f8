// Issue 17, item 10: with @fastify/websocket registered by the app before the
// gate, app.injectWS() threw `TypeError: value.charCodeAt is not a function`
// from the gate's checks (it sends Sec-WebSocket-Version as the number 13);
// with the gate registering @fastify/websocket, injectWS() went around the
// gate altogether. Now injectWS() enters the gate like any upgrade, in both
// orders, whatever @fastify/websocket sends.
import fastifyWebsocket from '@fastify/websocket'
import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import fastifyWsGate, { accept, reject } from '../../lib/index.js'

for (const order of ['the gate registers @fastify/websocket', '@fastify/websocket registered first'] as const) {
  t.test(`injectWS() passes the gate (${order})`, async (t) => {
    const app = Fastify()
    if (order === '@fastify/websocket registered first') await app.register(fastifyWebsocket)
    await app.register(fastifyWsGate)
    routes(app)
    await app.ready()
    t.teardown(() => app.close())

    const ws = await app.injectWS('/rooms/lobby', { headers: { authorization: 'Bearer good' } })
    const message = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))))
    ws.send('hi')
    t.equal(await message, 'lobby: hi')
    ws.terminate()
    await t.rejects(app.injectWS('/rooms/lobby', { headers: { authorization: 'Bearer bad' } }), new Error('Unexpected server response: 401'))
    await t.rejects(app.injectWS('/rooms/lobby'), new Error('Unexpected server response: 401'))
    await t.rejects(app.injectWS('/plain'), new Error('Unexpected server response: 400'))
    const open = await app.injectWS('/open', { headers: { 'sec-websocket-protocol': 'a, b' } })
    t.equal(open.readyState, open.OPEN)
    open.terminate()
  })
}

function routes (app: FastifyInstance): void {
  app.get<{ Params: { room: string } }>('/rooms/:room', {
    websocket: true,
    handshake: (request) => request.headers.authorization === 'Bearer good' ? accept() : reject(401)
  }, (socket, request) => {
    // injectWS() drops what the server sends with its 101: answer the client's first message.
    socket.on('message', (data) => { socket.send(`${(request.params as { room: string }).room}: ${String(data)}`) })
  })
  app.get('/open', { websocket: true }, () => {})
  app.get('/plain', async () => 'plain')
}
