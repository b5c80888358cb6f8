// Faults: clients that leave at every point of the handshake, by the
// thousand, leave nothing behind: no pending handshakes, sockets, timers,
// listeners or heap, and no unhandled rejection.
import { once } from 'node:events'
import { connect } from 'node:net'
import { Readable } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { accept, reject } from '../lib/index.js'
import { eventually, start, upgradeRequest, wait } from './helpers.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const PER_KIND = 500
const BATCH = 50

type Leave = 'mid-request' | 'while pending' | 'mid-denial' | 'after 101'

// One client that leaves at the given point; resolves once it has left.
async function client (port: number, leave: Leave): Promise<void> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  const path = leave === 'while pending' ? '/pending' : leave === 'mid-denial' ? '/stream' : '/ok'
  const request = upgradeRequest(path)
  if (leave === 'mid-request') {
    socket.write(request.slice(0, request.length >> 1))
    await wait(1)
  } else if (leave === 'while pending') {
    socket.write(request)
    await wait(5)
  } else {
    socket.write(request)
    let timer: NodeJS.Timeout | undefined
    await Promise.race([once(socket, 'data'), new Promise((resolve) => { timer = setTimeout(resolve, 2000) })])
    clearTimeout(timer)
  }
  socket.destroy()
}

const resources = (): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1
  return counts
}

t.test(`${PER_KIND * 4} clients leaving at every point of the handshake leave nothing behind`, async (t) => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.removeListener('unhandledRejection', onUnhandled) })

  let errors = 0
  const { app, port, logs } = await start(t, (app) => {
    app.addHook('onError', async () => { errors++ })
    app.get('/pending', { websocket: true, handshake: async (_request, { signal }) => { await wait(30); signal.throwIfAborted(); return accept() } }, () => {})
    app.get('/stream', {
      websocket: true,
      handshake: () => reject(503, undefined, {
        body: Readable.from((async function * () { for (let i = 0; i < 20; i++) { yield `chunk ${i}\n`; await wait(10) } })())
      })
    }, () => {})
    app.get('/ok', { websocket: true, handshake: () => accept() }, (socket) => { socket.on('error', () => {}) })
  })
  // Warm up, so that lazily created objects are not counted as leaks.
  await Promise.all(Array.from({ length: BATCH }, (_, i) => client(port, (['while pending', 'mid-denial', 'after 101', 'mid-request'] as const)[i % 4])))
  await eventually(() => app.wsGate.pending === 0, 3000)
  await wait(100)
  logs.length = 0
  gc()
  const listeners = (): number[] => [
    app.server.listenerCount('upgrade'), app.server.listenerCount('request'), app.server.listenerCount('connection'),
    app.websocketServer.listenerCount('headers'), app.websocketServer.listenerCount('connection'), process.listenerCount('unhandledRejection')
  ]
  const baseline = { resources: resources(), heap: process.memoryUsage().heapUsed, listeners: listeners() }

  const kinds: Leave[] = ['mid-request', 'while pending', 'mid-denial', 'after 101']
  let errorLines = 0
  const heapAfter = async (): Promise<number> => {
    await eventually(() => app.wsGate.pending === 0, 5000)
    errorLines += logs.filter((line) => line.level >= 50).length
    logs.length = 0
    await wait(100)
    gc()
    return process.memoryUsage().heapUsed
  }
  // Four identical passes: what the first ones leave is warm-up (code,
  // caches, which settles within two passes here); a leak would make every
  // pass grow the heap by as much, the last two included.
  const PASSES = 4
  const heaps: number[] = []
  for (let pass = 0; pass < PASSES; pass++) {
    for (const kind of kinds) {
      for (let done = 0; done < PER_KIND / PASSES; done += BATCH) {
        await Promise.all(Array.from({ length: Math.min(BATCH, PER_KIND / PASSES - done) }, () => client(port, kind)))
      }
    }
    heaps.push(await heapAfter())
  }
  t.comment(`${PER_KIND} clients of each kind, in ${PASSES} passes: ${kinds.join(', ')}`)

  t.ok(await eventually(() => app.wsGate.pending === 0, 5000), 'no handshake is left pending')
  const connections = (): Promise<number> => new Promise((resolve) => app.server.getConnections((_err, count) => resolve(count)))
  let open = await connections()
  for (let i = 0; i < 100 && open > 0; i++) {
    await wait(50)
    open = await connections()
  }
  t.equal(open, 0, 'no server socket is left open')
  t.equal(app.websocketServer.clients.size, 0, 'no WebSocket is left open')
  t.strictSame(listeners(), baseline.listeners, 'no listener left on the server, the WebSocket server or the process')
  const now = resources()
  for (const name of ['Timeout', 'TCPSocketWrap', 'Immediate']) {
    t.ok((now[name] ?? 0) <= (baseline.resources[name] ?? 0), `${name}: ${now[name] ?? 0} active, ${baseline.resources[name] ?? 0} before`)
  }
  const growth = heaps.map((heap, i) => heap - (i === 0 ? baseline.heap : heaps[i - 1]))
  t.comment(`heap after GC, growth per pass of ${PER_KIND * 4 / PASSES} clients: ${growth.map((bytes) => `${(bytes / 1024).toFixed(0)} KiB`).join(', ')}`)
  const lastTwo = growth[PASSES - 2] + growth[PASSES - 1]
  // A leaked request, socket or WebSocket is kilobytes per client (docs/benchmarks.md);
  // GC noise here is a few hundred bytes per client at most.
  t.ok(lastTwo < 1024 * 1024, `the last two passes (${PER_KIND * 2} clients) kept less than 1 KiB per client (${(lastTwo / 1024).toFixed(0)} KiB in all)`)
  t.strictSame(unhandled, [], 'no unhandled rejection')
  t.equal(errors, 0, 'no request ended in an error')
  t.equal(errorLines, 0, 'nothing logged at error level')
})
