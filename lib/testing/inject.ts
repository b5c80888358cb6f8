// A handshake without a network, in the spirit of Fastify's inject(): a real
// `ws` client talks to the server over an in-memory connection that is handed
// to the server as Node's HTTP server takes any connection ('connection' with
// a Duplex). So the request goes the way a real one does: Node's parser, the
// server's 'upgrade' listeners, and whatever runs behind them. Fastify-free:
// it needs only a node:http server.
import type { EventEmitter } from 'node:events'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { Duplex } from 'node:stream'
import { MessageChannel } from 'node:worker_threads'
import WebSocket from 'ws'

export interface InjectHandshakeOptions {
  /** Request headers (an `Origin`, an `Authorization`, a `Cookie`, ...). The WebSocket ones are the client's own. */
  headers?: Record<string, string | string[]>
  /** Subprotocols to offer in `Sec-WebSocket-Protocol`. */
  protocols?: string[]
  /** Added to the URL's query string. */
  query?: string | Record<string, string | readonly string[]>
  /** The client address the server sees (`request.ip`). @default '127.0.0.1' */
  remoteAddress?: string
}

export interface InjectedAccept {
  accepted: true
  /** The selected subprotocol, '' when none. */
  protocol: string
  /** The 101's headers. */
  headers: IncomingHttpHeaders
  /** The client end of the connection, open: talk to the route's WebSocket handler, and close it when done. */
  socket: WebSocket
}

export interface InjectedDenial {
  accepted: false
  statusCode: number
  headers: IncomingHttpHeaders
  /** The body, as UTF-8 text. */
  body: string
  /** The body parsed as JSON. */
  json: <T = unknown>() => T
}

export type InjectedHandshake = InjectedAccept | InjectedDenial

/** Opens a WebSocket to `server` over an in-memory connection; resolves to the 101 or the denial the client saw. */
export function injectUpgrade (server: EventEmitter, url: string, options: InjectHandshakeOptions = {}): Promise<InjectedHandshake> {
  const [serverEnd, clientEnd] = connectionPair(options.remoteAddress ?? '127.0.0.1')
  server.emit('connection', serverEnd)
  // Nothing in memory keeps the process alive, and the engine's timers do not
  // (a server's listening socket does that): an open message port does, until
  // the outcome.
  const alive = new MessageChannel()
  alive.port1.ref()
  alive.port1.start()
  return new Promise<InjectedHandshake>((resolve, reject) => {
    const socket = new WebSocket(withQuery(`ws://localhost${url.startsWith('/') ? '' : '/'}${url}`, options.query), options.protocols ?? [], {
      headers: options.headers,
      createConnection: () => clientEnd as never
    })
    let headers: IncomingHttpHeaders = {}
    socket.on('upgrade', (response: IncomingMessage) => { headers = response.headers })
    socket.on('open', () => {
      socket.removeListener('error', reject)
      resolve({ accepted: true, protocol: socket.protocol, headers, socket })
    })
    socket.on('unexpected-response', (_request, response: IncomingMessage) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        clientEnd.destroy()
        resolve({ accepted: false, statusCode: response.statusCode as number, headers: response.headers, body, json: () => JSON.parse(body) })
      })
      response.on('error', reject)
    })
    socket.on('error', reject)
  }).finally(() => { alive.port1.close() })
}

function withQuery (url: string, query: InjectHandshakeOptions['query']): string {
  if (query === undefined) return url
  let search: string
  if (typeof query === 'string') {
    search = query.replace(/^\?/, '')
  } else {
    const params = new URLSearchParams()
    for (const [name, value] of Object.entries(query)) {
      for (const item of typeof value === 'string' ? [value] : value) params.append(name, item)
    }
    search = params.toString()
  }
  if (search === '') return url
  return `${url}${url.includes('?') ? '&' : '?'}${search}`
}

// One end of an in-memory connection: what is written to it is read from its
// peer. Like TCP, it delivers on a later turn of the event loop, never inside
// the writer's call or its microtasks: a client's send() must not run the
// server's handler before it returns, nor a close complete before the caller
// of injectHandshake() can listen for it. There is no backpressure: both
// readers (ws, Node's HTTP parser) read as data comes, and it is for tests.
class ConnectionEnd extends Duplex {
  peer!: ConnectionEnd
  remoteAddress: string | undefined
  bytesWritten = 0

  override _read (): void {}

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.bytesWritten += chunk.length
    setImmediate(() => {
      this.peer.push(chunk)
      callback()
    })
  }

  override _final (callback: () => void): void {
    setImmediate(() => {
      this.peer.push(null)
      callback()
    })
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    // A connection torn down at one end is gone at the other, as with TCP.
    setImmediate(() => this.peer.destroy())
    callback(err)
  }
}

function connectionPair (remoteAddress: string): [ConnectionEnd, ConnectionEnd] {
  const server = new ConnectionEnd()
  const client = new ConnectionEnd()
  server.peer = client
  client.peer = server
  server.remoteAddress = remoteAddress
  return [server, client]
}
