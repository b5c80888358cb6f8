// Recipe: send a WebSocket client to the node that owns its room.
// Each node serves its own rooms and answers the others with 307 and a
// Location on the node that has them. The `ws` client follows it with
// `followRedirects: true` (Python's websockets follows 3xx by itself);
// browsers do not follow redirects on WebSocket handshakes.
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import fastifyWsGate, { accept, reject } from 'fastify-ws-gate'

// rooms: the rooms this node serves; directory: room -> base URL of the node that serves it.
export async function build ({ name = 'a', rooms = ['lobby'], directory = new Map(), logger = false } = {}) {
  const app = Fastify({ logger })
  await app.register(fastifyWsGate)
  const here = new Set(rooms)

  app.get('/rooms/:room', {
    websocket: true,
    handshake: (request) => {
      const { room } = request.params
      if (here.has(room)) return accept()
      const node = directory.get(room)
      if (node === undefined) return reject(404, `No such room: ${room}`)
      // Same path and query string (and so a token in it), on the other node.
      return reject(307, 'Moved', { headers: { Location: `${node}${request.url}` } })
    }
  }, (socket, request) => {
    socket.send(`welcome to ${request.params.room} on node ${name}`)
  })
  return app
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3000)
  const toA = new Map()
  const toB = new Map()
  const nodeA = await build({ name: 'a', rooms: ['lobby'], directory: toB, logger: { level: 'warn' } })
  const nodeB = await build({ name: 'b', rooms: ['dev'], directory: toA, logger: { level: 'warn' } })
  await nodeA.listen({ port, host: '127.0.0.1' })
  await nodeB.listen({ port: port === 0 ? 0 : port + 1, host: '127.0.0.1' })
  const a = `ws://127.0.0.1:${nodeA.server.address().port}`
  const b = `ws://127.0.0.1:${nodeB.server.address().port}`
  toB.set('dev', b)
  toA.set('lobby', a)
  const follow = (url) => `node -e "const ws = new (require('ws'))('${url}', { followRedirects: true }); ws.on('message', (m) => { console.log(ws.url, String(m)); ws.close() })"`
  console.log(`
Redirect recipe: node a on ${a} (lobby), node b on ${b} (dev)

  the 307 itself:           node examples/client.mjs '${a}/rooms/dev'
  followed, 101 on node b:  ${follow(`${a}/rooms/dev`)}
`)
}
