// A bare ws WebSocketServer on node:http with its defaults, for
// bench/attacks.mjs: the routes of attack-gate.mjs, decided in verifyClient
// (no /asgi-close). Its shutdown: close every client with 1001, then ws's
// server and the HTTP server.
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'
import { commands, logError, SLOW_HOOK_MS, watch } from './attack-common.mjs'
import { counters, serve } from './common.mjs'

const server = createServer((_req, res) => { res.writeHead(404).end() })
const wss = new WebSocketServer({
  server,
  verifyClient: (info, done) => {
    const path = info.req.url
    if (path === '/accept' || path === '/close') done(true)
    else if (path === '/pending') counters.pending++
    else if (path === '/slow-hook') setTimeout(() => done(true), SLOW_HOOK_MS)
    else done(false, 404)
  }
})
wss.on('error', (err) => logError('websocket server error', err))
wss.on('connection', (socket, req) => {
  watch(socket, (err) => logError('websocket error', err))
  if (req.url === '/close') socket.close(1000, 'bye')
})
commands(async () => {
  for (const client of wss.clients) client.close(1001, 'Server shutting down')
  await new Promise((resolve) => wss.close(resolve))
  await new Promise((resolve) => server.close(resolve))
})
await serve(server)
