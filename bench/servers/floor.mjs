// (4) The floor: a bare node:http 'upgrade' listener that writes a static 401
// or hands the socket to ws.handleUpgrade. Nothing routes, nothing validates.
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'
import { BODY, counters, serve } from './common.mjs'

const DENIAL = Buffer.from('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Type: application/json; charset=utf-8\r\n' +
  `Content-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`)
const server = createServer((_req, res) => { res.writeHead(404).end() })
const wss = new WebSocketServer({ noServer: true })
server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => socket.destroy())
  if (req.url === '/accept') {
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))
  } else if (req.url === '/pending') {
    counters.pending++
  } else {
    socket.end(DENIAL)
  }
})
await serve(server)
