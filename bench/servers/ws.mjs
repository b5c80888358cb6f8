// (3) ws alone, deciding in verifyClient.
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'
import { counters, serve } from './common.mjs'

const server = createServer((_req, res) => { res.writeHead(404).end() })
const wss = new WebSocketServer({
  server,
  verifyClient: (info, done) => {
    const path = info.req.url
    if (path === '/accept') done(true)
    else if (path === '/pending') counters.pending++
    else done(false, 401, 'Unauthorized', { 'WWW-Authenticate': 'Bearer' })
  }
})
wss.on('connection', () => {})
await serve(server)
