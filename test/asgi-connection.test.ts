// asgi(): the connection half of the protocol, after websocket.accept.
import { once } from 'node:events'
import t from 'tap'
import WebSocket from 'ws'
import { asgi, type AsgiApp, type AsgiReceiveMessage } from '../lib/index.js'
import { connectWs, eventually, opened, start, upgradeAndWait, wait } from './helpers.js'

function settle<T> () {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((_resolve) => { resolve = _resolve })
  return { promise, resolve }
}

async function serve (t: tap.Test, app: AsgiApp) {
  return start(t, (fastify) => { fastify.get('/live', asgi(app)) })
}

function closeOf (ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve([code, reason.toString()])))
}

async function messages (outcome: { messages: Array<[string, boolean]> }, count: number): Promise<Array<[string, boolean]>> {
  await eventually(() => outcome.messages.length >= count, 2000)
  return outcome.messages
}

t.test('text and bytes both ways; send resolves once written', async (t) => {
  const received: AsgiReceiveMessage[] = []
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    await send({ type: 'websocket.send', text: '123' })
    await send({ type: 'websocket.send', bytes: Buffer.from('456') })
    await send({ type: 'websocket.send', bytes: '789' })
    await send({ type: 'websocket.send', bytes: null, text: 'null bytes is absent' })
    for (;;) {
      const message = await receive()
      received.push(message)
      if (message.type === 'websocket.disconnect') return
    }
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  t.strictSame(await messages(outcome, 4), [['123', false], ['456', true], ['789', true], ['null bytes is absent', false]])
  ws.send('abc')
  ws.send(Buffer.from([1, 2, 3]))
  ws.close(4000, 'done')
  t.ok(await eventually(() => received.length === 3, 2000))
  t.strictSame(received, [
    { type: 'websocket.receive', text: 'abc' },
    { type: 'websocket.receive', bytes: Buffer.from([1, 2, 3]) },
    { type: 'websocket.disconnect', code: 4000, reason: 'done' }
  ])
})

for (const [label, message, expected] of [
  ['no code, no reason', { type: 'websocket.close' }, [1000, '']],
  ['code 1001', { type: 'websocket.close', code: 1001 }, [1001, '']],
  ['code and reason', { type: 'websocket.close', code: 4003, reason: 'bye' }, [4003, 'bye']],
  ['null reason', { type: 'websocket.close', code: 1000, reason: null }, [1000, '']]
] as const) {
  t.test(`websocket.close after accept sends a close frame: ${label}`, async (t) => {
    const after = settle<unknown>()
    const { port } = await serve(t, async (_scope, receive, send) => {
      await receive()
      await send({ type: 'websocket.accept' })
      await send({ type: 'websocket.send', text: 'last' })
      await send(message)
      after.resolve(await send({ type: 'websocket.send', text: 'too late' }).catch((err: Error) => err))
    })
    const outcome = opened(await connectWs(port, '/live'))
    const { ws } = outcome
    const closed = closeOf(ws)
    t.strictSame(await messages(outcome, 1), [['last', false]])
    t.strictSame(await closed, expected)
    t.equal((await after.promise as Error).message, "Unexpected ASGI message 'websocket.send', after sending 'websocket.close' or response already completed.")
  })
}

t.test('a second accept is refused in uvicorn\'s words; the connection carries on', async (t) => {
  const error = settle<Error>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    error.resolve(await send({ type: 'websocket.accept' }).catch((err: Error) => err) as Error)
    await send({ type: 'websocket.send', text: 'still here' })
    await receive()
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  t.strictSame(await messages(outcome, 1), [['still here', false]])
  const err = await error.promise
  t.equal(err.message, "Expected ASGI message 'websocket.send' or 'websocket.close', but got 'websocket.accept'.")
  t.equal((err as { code?: string }).code, 'FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE')
  ws.close()
})

t.test('invalid websocket.send and websocket.close messages are refused', async (t) => {
  const errors: Error[] = []
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    for (const bad of [
      { type: 'websocket.send' },
      { type: 'websocket.send', text: 'a', bytes: 'b' },
      { type: 'websocket.send', text: 42 },
      { type: 'websocket.send', bytes: 42 },
      { type: 'websocket.close', code: 999 },
      { type: 'websocket.http.response.start', status: 401 }
    ]) {
      errors.push(await send(bad as never).catch((err: Error) => err) as Error)
    }
    await send({ type: 'websocket.send', text: 'done' })
    await receive()
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  t.strictSame(await messages(outcome, 1), [['done', false]])
  t.strictSame(errors.map((err) => err.message), [
    'Invalid ASGI message \'websocket.send\': exactly one of "bytes" and "text" must be given',
    'Invalid ASGI message \'websocket.send\': exactly one of "bytes" and "text" must be given',
    'Invalid ASGI message \'websocket.send\': "text" must be a string',
    'Invalid ASGI message \'websocket.send\': "bytes" must be bytes or a string',
    'Invalid ASGI message \'websocket.close\': First argument must be a valid error code number',
    "Expected ASGI message 'websocket.send' or 'websocket.close', but got 'websocket.http.response.start'."
  ])
  ws.close()
})

t.test('a client that closes: disconnect with its code, and send rejects afterwards', async (t) => {
  const result = settle<[AsgiReceiveMessage, Error]>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    const message = await receive()
    const err = await send({ type: 'websocket.send', text: 'x' }).catch((err: Error) => err) as Error
    result.resolve([message, err])
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  ws.close(1001, 'going away')
  const [message, err] = await result.promise
  t.strictSame(message, { type: 'websocket.disconnect', code: 1001, reason: 'going away' })
  t.equal((err as { code?: string }).code, 'FST_WS_GATE_ASGI_CLIENT_DISCONNECTED')
})

t.test('a client whose connection is lost: disconnect with 1006', async (t) => {
  const got = settle<AsgiReceiveMessage>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    got.resolve(await receive())
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  ws.terminate()
  t.strictSame(await got.promise, { type: 'websocket.disconnect', code: 1006, reason: '' })
})

t.test('messages the client sent before closing are delivered before the disconnect', async (t) => {
  const received: AsgiReceiveMessage[] = []
  const done = settle<void>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    await wait(100)
    for (;;) {
      const message = await receive()
      received.push(message)
      if (message.type === 'websocket.disconnect') break
    }
    done.resolve()
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  for (let i = 0; i < 3; i++) ws.send(Buffer.from('abc'))
  ws.close(1000)
  await done.promise
  t.strictSame(received, [
    { type: 'websocket.receive', bytes: Buffer.from('abc') },
    { type: 'websocket.receive', bytes: Buffer.from('abc') },
    { type: 'websocket.receive', bytes: Buffer.from('abc') },
    { type: 'websocket.disconnect', code: 1000, reason: '' }
  ])
})

t.test('a slow application gets every message, in order, while the socket is paused', async (t) => {
  const count = 300
  const received: string[] = []
  const done = settle<void>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    await wait(200)
    for (let i = 0; i < count; i++) {
      const message = await receive()
      received.push((message as { text: string }).text)
    }
    done.resolve()
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  for (let i = 0; i < count; i++) ws.send(String(i))
  await done.promise
  t.strictSame(received, Array.from({ length: count }, (_, i) => String(i)))
  ws.close()
})

t.test('an app that returns after accept: the connection is closed with 1000', async (t) => {
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  t.strictSame(await closeOf(ws), [1000, ''])
})

t.test('an app that raises after accept: close 1011 and one error line', async (t) => {
  const { port, logs } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    throw new Error('after accept')
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  t.strictSame(await closeOf(ws), [1011, ''])
  const errors = logs.filter((line) => line.level >= 50)
  t.equal(errors.length, 1)
  t.equal(errors[0].msg, 'ASGI application failed; closing the connection with 1011')
})

t.test('an app that raises after the client left is logged', async (t) => {
  const { port, logs } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    await receive()
    throw new Error('after disconnect')
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  ws.close()
  t.ok(await eventually(() => logs.some((line) => line.level >= 50), 2000))
  t.equal(logs.find((line) => line.level >= 50)?.msg, 'ASGI application failed after the connection ended')
})

t.test('concurrent receives all resolve; none hangs once the connection is gone', async (t) => {
  const got = settle<AsgiReceiveMessage[]>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    got.resolve(await Promise.all([receive(), receive(), receive()]))
  })
  const outcome = opened(await connectWs(port, '/live'))
  const { ws } = outcome
  ws.send('one')
  await wait(50)
  ws.close(1000)
  const messagesGot = await got.promise
  t.strictSame(messagesGot, [
    { type: 'websocket.receive', text: 'one' },
    { type: 'websocket.disconnect', code: 1000, reason: '' },
    { type: 'websocket.disconnect', code: 1000, reason: '' }
  ])
})

t.test('a close frame without a code is reported as 1005, as RFC 6455 §7.1.5 says', async (t) => {
  const got = settle<AsgiReceiveMessage>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    got.resolve(await receive())
  })
  const { ws } = opened(await connectWs(port, '/live'))
  ws.close()
  t.strictSame(await got.promise, { type: 'websocket.disconnect', code: 1005, reason: '' })
})

t.test('a send while the client\'s close handshake is under way: the client is leaving', async (t) => {
  const result = settle<unknown>()
  const ready = settle<void>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    await ready.promise
    result.resolve(await send({ type: 'websocket.send', text: 'x' }).catch((err: Error) => err))
  })
  // Half-open allowed: the server's FIN after its close frame must not end our side.
  const { socket } = await upgradeAndWait(port, '/live', true)
  // A masked close frame with code 1000; the TCP connection stays open, so
  // the server's socket is CLOSING and has not emitted 'close' yet.
  socket.write(Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]))
  await wait(50)
  ready.resolve()
  const err = await result.promise as Error
  t.equal((err as { code?: string }).code, 'FST_WS_GATE_ASGI_CLIENT_DISCONNECTED')
  t.equal(err.message, "The client has disconnected; 'websocket.send' cannot be sent")
  socket.destroy()
})

t.test('sends waiting on a slow denial body resolve when the client leaves; receive says 1006', async (t) => {
  const outcome = settle<unknown[]>()
  const { port } = await start(t, (fastify) => {
    fastify.get('/deny', asgi(async (_scope, receive, send) => {
      await receive()
      await send({ type: 'websocket.http.response.start', status: 503 })
      const results: unknown[] = []
      // 8 MiB more than the socket can take at once, so the second send waits.
      await send({ type: 'websocket.http.response.body', body: Buffer.alloc(8 * 1024 * 1024), more_body: true })
      // Waits: the engine is still writing the first chunk to a client that does not read.
      results.push(await send({ type: 'websocket.http.response.body', body: 'tail', more_body: true }).then(() => 'resolved'))
      results.push(await send({ type: 'websocket.http.response.body', body: 'last' }).catch((err: Error) => (err as { code?: string }).code))
      results.push(await receive())
      outcome.resolve(results)
    }))
  }, { denialMaxBodySize: 64 * 1024 * 1024 })
  const { socket } = await upgradeAndWait(port, '/deny')
  socket.pause()
  await wait(100)
  socket.destroy()
  t.strictSame(await outcome.promise, ['resolved', 'FST_WS_GATE_ASGI_CLIENT_DISCONNECTED', { type: 'websocket.disconnect', code: 1006 }])
})

t.test('websocket.send backpressure: send resolves once the frame is written, not before', async (t) => {
  const states: string[] = []
  const done = settle<void>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    await send({ type: 'websocket.send', bytes: Buffer.alloc(32 * 1024 * 1024) })
    states.push('written')
    done.resolve()
    await receive()
  })
  const { socket } = await upgradeAndWait(port, '/live')
  socket.pause()
  await wait(300)
  t.strictSame(states, [], 'not written while the client does not read')
  socket.on('data', () => {})
  socket.resume()
  await done.promise
  t.strictSame(states, ['written'])
  socket.destroy()
})

t.test('an application that falls behind makes the server stop reading; closing still completes', async (t) => {
  const received = settle<number>()
  const go = settle<void>()
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    await go.promise
    let count = 0
    for (;;) {
      const message = await receive()
      if (message.type === 'websocket.disconnect') break
      count++
    }
    received.resolve(count)
  })
  const { ws } = opened(await connectWs(port, '/live'))
  const chunk = Buffer.alloc(256 * 1024)
  for (let i = 0; i < 100; i++) ws.send(chunk)
  await wait(400)
  // 25 MiB sent to an app that takes nothing: the server reads about 1 MiB,
  // the kernel buffers a few more, the rest stays with the client.
  t.ok(ws.bufferedAmount > 8 * 1024 * 1024, `the client still holds ${ws.bufferedAmount} bytes`)
  go.resolve()
  ws.close(1000)
  t.equal(await received.promise, 100, 'every message arrives once the app reads')
})

t.test('when the app closes while reading is paused, the close handshake completes', async (t) => {
  const { port } = await serve(t, async (_scope, receive, send) => {
    await receive()
    await send({ type: 'websocket.accept' })
    await wait(300)
    await send({ type: 'websocket.close', code: 4000 })
  })
  const { ws } = opened(await connectWs(port, '/live'))
  const closed = closeOf(ws)
  for (let i = 0; i < 100; i++) ws.send('x')
  const started = Date.now()
  t.strictSame(await closed, [4000, ''])
  t.ok(Date.now() - started < 5000, 'closed without waiting for ws\'s 30 s close timer')
})

t.test('a send whose frame ws cannot finish (the client left during compression) rejects: the client has disconnected', async (t) => {
  const result = settle<unknown>()
  const { port } = await start(t, (fastify) => {
    fastify.get('/live', asgi(async (_scope, receive, send) => {
      await receive()
      await send({ type: 'websocket.accept' })
      result.resolve(await send({ type: 'websocket.send', bytes: Buffer.alloc(32 * 1024 * 1024, 'z') }).catch((err: Error) => err))
    }))
  }, { websocket: { options: { perMessageDeflate: true } } })
  const ws = new WebSocket(`ws://127.0.0.1:${port}/live`)
  ws.on('error', () => {})
  await once(ws, 'open')
  t.match(ws.extensions, /permessage-deflate/)
  ws.terminate()
  const err = await result.promise as Error
  t.equal((err as { code?: string }).code, 'FST_WS_GATE_ASGI_CLIENT_DISCONNECTED')
  t.match(err.message, /^The client has disconnected; 'websocket\.send' \(.+\) cannot be sent$/)
})
