// Load: thousands of concurrent handshakes, half accepted and half rejected,
// with slow async handlers; every client gets its own correct answer. And
// maxPendingHandshakes sheds exactly the excess.
import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { accept, reject, type HandshakeDecision } from '../lib/index.js'
import { eventually, parseRaw, start, upgradeRequest, wait } from './helpers.js'

const CLIENTS = 2000

// One raw client: sends its upgrade, resolves with the response head and body.
async function handshake (port: number, path: string): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  return new Promise((resolve) => {
    let text = ''
    const timer = setTimeout(() => socket.destroy(), 20_000)
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      text += chunk
      if (text.startsWith('HTTP/1.1 101') && text.includes('\r\n\r\n')) socket.destroy()
    })
    socket.on('close', () => { clearTimeout(timer); resolve(text) })
    socket.write(upgradeRequest(path, { 'Sec-WebSocket-Protocol': `id-${path.slice(4)}` }))
  })
}

t.test(`${CLIENTS} concurrent handshakes, half accepted, half rejected, with slow handlers: each client gets its own answer`, async (t) => {
  const { app, port } = await start(t, (app) => {
    app.get<{ Params: { id: string } }>('/id/:id', {
      websocket: true,
      handshake: async (request, { protocols }) => {
        const id = Number(request.params.id)
        await wait(id % 50)
        return id % 2 === 0
          ? accept({ protocol: protocols[0], headers: { 'X-Id': String(id) } })
          : reject(403, `client ${id} refused`)
      }
    }, () => {})
  }, { maxPendingHandshakes: CLIENTS })
  const answers = await Promise.all(Array.from({ length: CLIENTS }, (_, id) => handshake(port, `/id/${id}`)))
  let accepted = 0
  let rejected = 0
  const wrong: string[] = []
  answers.forEach((text, id) => {
    const { statusLine, headerLines, body } = parseRaw(text)
    if (id % 2 === 0) {
      if (statusLine === 'HTTP/1.1 101 Switching Protocols' && headerLines.includes(`X-Id: ${id}`) && headerLines.includes(`Sec-WebSocket-Protocol: id-${id}`)) accepted++
      else wrong.push(`${id}: ${statusLine}`)
    } else if (statusLine === 'HTTP/1.1 403 Forbidden' && body === JSON.stringify({ statusCode: 403, error: 'Forbidden', message: `client ${id} refused` })) {
      rejected++
    } else {
      wrong.push(`${id}: ${statusLine}`)
    }
  })
  t.comment(`${CLIENTS} clients: ${accepted} accepted, ${rejected} rejected, ${wrong.length} wrong`)
  t.strictSame(wrong, [])
  t.equal(accepted, CLIENTS / 2)
  t.equal(rejected, CLIENTS / 2)
  t.equal(app.wsGate.shed, 0)
})

t.test('maxPendingHandshakes sheds exactly the excess', async (t) => {
  const MAX = 200
  const EXCESS = 100
  const release: Array<(decision: HandshakeDecision) => void> = []
  const { app, port } = await start(t, (app) => {
    app.get<{ Params: { id: string } }>('/id/:id', {
      websocket: true,
      handshake: () => new Promise((resolve) => release.push(resolve))
    }, () => {})
  }, { maxPendingHandshakes: MAX })
  const first = Array.from({ length: MAX }, (_, id) => handshake(port, `/id/${id}`))
  t.ok(await eventually(() => app.wsGate.pending === MAX, 10_000), `${MAX} pending`)
  const excess = await Promise.all(Array.from({ length: EXCESS }, (_, id) => handshake(port, `/id/${MAX + id}`)))
  t.equal(excess.filter((text) => parseRaw(text).statusLine === 'HTTP/1.1 503 Service Unavailable').length, EXCESS, `all ${EXCESS} in excess got 503`)
  t.equal(app.wsGate.shed, EXCESS)
  for (const resolve of release) resolve(reject(409))
  const answers = await Promise.all(first)
  t.equal(answers.filter((text) => parseRaw(text).statusLine === 'HTTP/1.1 409 Conflict').length, MAX, `the ${MAX} admitted got their own answer`)
  t.comment(`${MAX} admitted, ${EXCESS} shed`)
})
