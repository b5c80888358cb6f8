// Regression (issue 17, item 4): the ASGI receive queue was unbounded once the
// application had closed or returned. The socket is paused only while the
// connection is open (after the app's close, ws must go on reading to see the
// client's close frame), so a client that ignores our close frame and floods
// large binary frames grew the queue by as much as it sent, until ws's 30 s
// close timer. The cap (64 messages, 1 MiB) now holds in every phase: after
// the app's close what does not fit is dropped, and once the app has returned
// (or raised) nothing is queued at all.
//
// The queue is measured by what it holds: everything queued is what receive()
// gives back, so the test floods, lets the client's close end the connection,
// and then drains receive() (a bounded loop).
import { once } from 'node:events'
import type { Socket } from 'node:net'
import t from 'tap'
import { asgi, type AsgiReceive, type AsgiReceiveMessage } from '../../lib/index.js'
import { start, upgradeAndWait } from '../helpers.js'

const FRAMES = 256
const MiB = 1024 * 1024

// A masked binary frame with a 1 MiB payload (RFC 6455 §5.2: 127, then a
// 64-bit length). The masking key is zero, so the payload goes as it is.
function binaryFrame (size: number): Buffer {
  const frame = Buffer.alloc(14 + size, 0x61)
  frame[0] = 0x82
  frame[1] = 0x80 | 127
  frame.writeBigUInt64BE(BigInt(size), 2)
  frame.writeUInt32BE(0, 10)
  return frame
}
// The client's own close frame, code 1000, masked with a zero key.
const CLOSE_1000 = Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])

// Connects, reads the 101 and the server's close frame (and ignores it: no
// close frame back), floods FRAMES frames of 1 MiB, then closes and waits for
// the server to end the connection. Resolves to the close code the server sent.
async function ignoreCloseAndFlood (t: tap.Test, port: number): Promise<number> {
  const { socket, first } = await upgradeAndWait(port, '/live')
  socket.pause()
  let received = first
  const closeFrame = (): Buffer | undefined => {
    const end = received.indexOf('\r\n\r\n')
    if (end === -1) return undefined
    const frame = received.subarray(end + 4)
    return frame.length >= 4 && frame[0] === 0x88 ? frame : undefined
  }
  while (closeFrame() === undefined) {
    socket.resume()
    const [chunk] = await once(socket, 'data') as [Buffer]
    socket.pause()
    received = Buffer.concat([received, chunk])
  }
  t.match(received.toString('latin1'), /^HTTP\/1\.1 101 Switching Protocols\r\n/, 'a 101, then the server\'s close frame')
  const code = (closeFrame() as Buffer).readUInt16BE(2)
  const closed = once(socket, 'close')
  socket.on('data', () => {})
  socket.on('error', () => {})
  socket.resume()
  const frame = binaryFrame(MiB)
  for (let i = 0; i < FRAMES; i++) {
    if (!socket.write(frame)) await once(socket, 'drain')
  }
  ;(socket as Socket).write(CLOSE_1000)
  await closed
  return code
}

interface Held { messages: number, bytes: number, disconnect: number | null }

// What the queue still holds, up to the disconnect: how many messages and
// bytes (a bounded loop: more turns than the flood could have queued).
async function drain (receive: AsgiReceive): Promise<Held> {
  const held: Held = { messages: 0, bytes: 0, disconnect: null }
  for (let i = 0; i < FRAMES + 2; i++) {
    const message: AsgiReceiveMessage = await receive()
    if (message.type === 'websocket.disconnect') {
      held.disconnect = message.code
      break
    }
    held.messages++
    held.bytes += message.bytes?.length ?? 0
  }
  return held
}

function settle<T> () {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((_resolve) => { resolve = _resolve })
  return { promise, resolve }
}

t.test('after the app\'s close, a client that ignores the close frame and floods: the queue stays within its 1 MiB cap', async (t) => {
  const flooded = settle<void>()
  const after = settle<Held>()
  const { port, logs } = await start(t, (fastify) => {
    fastify.get('/live', asgi(async (_scope, receive, send) => {
      await receive()
      await send({ type: 'websocket.accept' })
      await send({ type: 'websocket.close', code: 4000 })
      await flooded.promise
      after.resolve(await drain(receive))
    }))
  })
  t.equal(await ignoreCloseAndFlood(t, port), 4000)
  flooded.resolve()
  // One 1 MiB message fits the cap; the other 255 were read (so that ws saw
  // the client's close frame) and dropped. Before the fix: all 256 queued.
  t.strictSame(await after.promise, { messages: 1, bytes: MiB, disconnect: 1000 })
  t.equal(logs.filter((line) => line.msg === 'ASGI application has closed: dropping the messages it will not receive').length, 1)
})

for (const ending of ['returns', 'raises'] as const) {
  t.test(`after the app ${ending}, a client that ignores the close frame and floods: nothing is queued`, async (t) => {
    const kept = settle<AsgiReceive>()
    const { port } = await start(t, (fastify) => {
      fastify.get('/live', asgi(async (_scope, receive, send) => {
        kept.resolve(receive)
        await receive()
        await send({ type: 'websocket.accept' })
        if (ending === 'raises') throw new Error('raised after accept')
      }))
    })
    t.equal(await ignoreCloseAndFlood(t, port), ending === 'returns' ? 1000 : 1011)
    // receive() is still callable after the app is done: what it gives back
    // is what the session kept. Before the fix: the 256 frames, then the disconnect.
    t.strictSame(await drain(await kept.promise), { messages: 0, bytes: 0, disconnect: 1000 })
  })
}
