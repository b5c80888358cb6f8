// One ASGI WebSocket connection: the application's receive() and send(), as a
// state machine over the handshake engine. Fastify-free: it takes the engine,
// a logger and (after accept) a `ws` WebSocket.
//
//   handshake ─accept──────────▶ connected ─close──▶ closed
//       │ ─close (403)──────────▶ ended
//       │ ─http.response.start─▶ response ─body (final)─▶ ended
//       └ client left / timeout ▶ gone        connected ─client closed─▶ gone
import type { WebSocket } from 'ws'
import { AsgiBody } from './body.js'
import {
  FST_WS_GATE_ASGI_CLIENT_DISCONNECTED,
  FST_WS_GATE_ASGI_INCOMPLETE_RESPONSE,
  FST_WS_GATE_ASGI_INVALID_MESSAGE,
  FST_WS_GATE_ASGI_NO_DECISION,
  FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE,
  FST_WS_GATE_INVALID_HEADER
} from '../errors.js'
import { accept, reject } from '../engine/decision.js'
import type { Handshake, HandshakeLogger } from '../engine/handshake.js'
import { allowsBody, checkStatus, toHeaderPairs, type HeaderPairs } from '../engine/http.js'
import type {
  AsgiApp, AsgiHeaders, AsgiReceiveMessage, AsgiSendMessage, WebSocketDisconnectEvent, WebSocketScope
} from './types.js'

type Phase = 'handshake' | 'response' | 'connected' | 'closed' | 'ended' | 'gone'

// Incoming frames the application has not received yet: past the high mark
// the socket stops reading, so a slow application cannot be flooded.
const HIGH_WATER = 64
const LOW_WATER = 16

const EMPTY = Buffer.alloc(0)

export class AsgiSession {
  readonly #gate: Handshake
  readonly #log: HandshakeLogger
  #phase: Phase = 'handshake'
  #endedBy = ''
  readonly #queue: AsgiReceiveMessage[] = [{ type: 'websocket.connect' }]
  readonly #waiting: Array<(message: AsgiReceiveMessage) => void> = []
  #disconnect: WebSocketDisconnectEvent | undefined
  #ws: WebSocket | undefined
  #body: AsgiBody | undefined

  constructor (gate: Handshake, log: HandshakeLogger) {
    this.#gate = gate
    this.#log = log
    gate.onAbandoned = () => {
      if (this.#phase === 'handshake') this.#gone()
    }
  }

  /** Runs the application; the engine must already be watching the socket. */
  run (app: AsgiApp, scope: WebSocketScope): void {
    let result: unknown
    try {
      result = app(scope, this.receive, this.send)
    } catch (err) {
      this.#raised(err)
      return
    }
    Promise.resolve(result).then(() => this.#returned(), (err: unknown) => this.#raised(err))
  }

  /** The route's WebSocket handler: the 101 is out, the connection starts. */
  connected (ws: WebSocket): void {
    this.#ws = ws
    this.#phase = 'connected'
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.#push(isBinary ? { type: 'websocket.receive', bytes: data } : { type: 'websocket.receive', text: data.toString('utf8') })
    })
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.#phase === 'connected') this.#phase = 'gone'
      this.#end({ type: 'websocket.disconnect', code, reason: reason.toString('utf8') })
    })
  }

  readonly receive = (): Promise<AsgiReceiveMessage> => {
    const next = this.#queue.shift()
    if (next !== undefined) {
      if (this.#queue.length === LOW_WATER) this.#ws?.resume()
      return Promise.resolve(next)
    }
    // Once the connection is gone, every receive gets the disconnect: none hangs.
    if (this.#disconnect !== undefined) return Promise.resolve(this.#disconnect)
    return new Promise((resolve) => this.#waiting.push(resolve))
  }

  readonly send = async (message: AsgiSendMessage): Promise<void> => {
    if (typeof message !== 'object' || message === null || typeof message.type !== 'string') {
      throw new FST_WS_GATE_ASGI_INVALID_MESSAGE(String(message), 'expected an object with a string "type"')
    }
    switch (this.#phase) {
      case 'handshake': return this.#sendHandshake(message)
      case 'response': return this.#sendBody(message)
      case 'connected': return this.#sendConnected(message)
      case 'gone': throw new FST_WS_GATE_ASGI_CLIENT_DISCONNECTED(`'${message.type}'`)
      default: throw new FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE(`Unexpected ASGI message '${message.type}', after sending '${this.#endedBy}'.`)
    }
  }

  #sendHandshake (message: AsgiSendMessage): void {
    switch (message.type) {
      case 'websocket.accept':
        this.#decide(message.type, () => {
          this.#gate.applyOrThrow(accept({ protocol: message.subprotocol ?? undefined, headers: asgiHeaders(message.headers) }))
        })
        // ws completes a valid upgrade synchronously; if it did not, it has
        // answered the client itself (e.g. a malformed extension offer).
        if (this.#ws === undefined) this.#gone()
        return
      case 'websocket.close':
        this.#decide(message.type, () => { this.#gate.applyOrThrow(reject()) })
        this.#ended(message.type)
        return
      case 'websocket.http.response.start':
        this.#decide(message.type, () => { this.#start(message.status, message.headers) })
        return
      default:
        throw new FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE(
          `Expected ASGI message 'websocket.accept', 'websocket.close' or 'websocket.http.response.start' but got '${(message as { type: string }).type}'.`)
    }
  }

  // A decision the engine refuses (a bad status, header or subprotocol) is a
  // 500 for the client and an error for the application's send().
  #decide (type: string, apply: () => void): void {
    try {
      apply()
    } catch (err) {
      this.#gate.invalid(err)
      this.#ended(type)
      throw err
    }
  }

  #start (rawStatus: unknown, rawHeaders: AsgiHeaders | undefined): void {
    const status = checkStatus(rawStatus)
    const headers = toHeaderPairs(asgiHeaders(rawHeaders), { allowLength: true })
    const length = declaredLength(headers)
    const body = allowsBody(status) ? new AsgiBody() : null
    this.#gate.deny({ status, headers, body, length })
    this.#phase = 'response'
    if (body === null) return
    this.#body = body
    // The engine destroys the body when the client leaves mid-response.
    body.on('close', () => {
      if (this.#phase === 'response') this.#gone()
    })
  }

  async #sendBody (message: AsgiSendMessage): Promise<void> {
    if (message.type !== 'websocket.http.response.body') {
      throw new FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE(`Expected ASGI message 'websocket.http.response.body' but got '${message.type}'.`)
    }
    const chunk = toBytes(message.type, 'body', message.body ?? EMPTY)
    const more = message.more_body === true
    const body = this.#body
    if (!more) this.#ended(message.type)
    if (body === undefined) return
    if (chunk.length > 0) await body.send(chunk)
    if (!more) await body.send(null)
  }

  async #sendConnected (message: AsgiSendMessage): Promise<void> {
    const ws = this.#ws as WebSocket
    if (message.type === 'websocket.send') {
      const { text, bytes } = message
      if ((text == null) === (bytes == null)) {
        throw new FST_WS_GATE_ASGI_INVALID_MESSAGE(`'${message.type}'`, 'exactly one of "bytes" and "text" must be given')
      }
      const data = text != null ? toText(message.type, text) : toBytes(message.type, 'bytes', bytes as never)
      await new Promise<void>((resolve, reject) => {
        ws.send(data, { binary: text == null }, (err) => err === undefined || err === null ? resolve() : reject(err))
      })
      return
    }
    if (message.type === 'websocket.close') {
      try {
        ws.close(message.code ?? 1000, message.reason ?? '')
      } catch (err) {
        throw new FST_WS_GATE_ASGI_INVALID_MESSAGE(`'${message.type}'`, (err as Error).message)
      }
      this.#phase = 'closed'
      this.#endedBy = message.type
      return
    }
    throw new FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE(`Expected ASGI message 'websocket.send' or 'websocket.close', but got '${message.type}'.`)
  }

  #returned (): void {
    switch (this.#phase) {
      case 'handshake':
        this.#gate.invalid(new FST_WS_GATE_ASGI_NO_DECISION())
        this.#ended('nothing')
        return
      case 'response':
        // The engine logs it once, and cuts the response short.
        this.#fail(new FST_WS_GATE_ASGI_INCOMPLETE_RESPONSE())
        return
      case 'connected':
        (this.#ws as WebSocket).close(1000)
        this.#phase = 'closed'
        this.#endedBy = 'nothing'
    }
  }

  #raised (err: unknown): void {
    switch (this.#phase) {
      case 'handshake':
        this.#ended('nothing')
        this.#gate.fail(err)
        return
      case 'response':
        this.#fail(err as Error)
        return
      case 'connected':
        this.#log.error({ err }, 'ASGI application failed; closing the connection with 1011')
        ;(this.#ws as WebSocket).close(1011)
        this.#phase = 'closed'
        this.#endedBy = 'nothing'
        return
      default:
        this.#log.error({ err }, 'ASGI application failed after the connection ended')
    }
  }

  // A denial that cannot be completed: a streamed body is cut short (the
  // engine logs why); a 204/304 was complete at start, so only the log is left.
  #fail (err: Error): void {
    if (this.#body === undefined) this.#log.error({ err }, 'ASGI application failed after its denial was sent')
    else this.#body.fail(err)
    this.#ended('nothing')
  }

  // After a denial, or a client that left during the handshake, the app's
  // next receive() is a disconnect with 1006, as in the reference servers.
  #ended (type: string): void {
    this.#phase = 'ended'
    this.#endedBy = type
    this.#end({ type: 'websocket.disconnect', code: 1006 })
  }

  #gone (): void {
    this.#phase = 'gone'
    this.#end({ type: 'websocket.disconnect', code: 1006 })
  }

  #push (message: AsgiReceiveMessage): void {
    const waiting = this.#waiting.shift()
    if (waiting !== undefined) {
      waiting(message)
      return
    }
    this.#queue.push(message)
    if (this.#queue.length === HIGH_WATER) this.#ws?.pause()
  }

  // Called once per connection: each path that ends it (a decision, a client
  // that left, a close) moves the phase on, so no second path can reach here.
  #end (message: WebSocketDisconnectEvent): void {
    this.#disconnect = message
    this.#push(message)
    for (const waiting of this.#waiting.splice(0)) waiting(message)
  }
}

function toText (type: string, value: unknown): string {
  if (typeof value !== 'string') throw new FST_WS_GATE_ASGI_INVALID_MESSAGE(`'${type}'`, '"text" must be a string')
  return value
}

function toBytes (type: string, field: string, value: unknown): Buffer {
  if (typeof value === 'string') return Buffer.from(value)
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  throw new FST_WS_GATE_ASGI_INVALID_MESSAGE(`'${type}'`, `"${field}" must be bytes or a string`)
}

// ASGI headers are byte pairs; on the wire a byte is a Latin-1 character.
function asgiHeaders (headers: AsgiHeaders | undefined): Array<[string, string]> | undefined {
  if (headers === undefined || headers === null) return undefined
  const pairs: Array<[string, string]> = []
  for (const pair of headers) {
    if (!Array.isArray(pair) || pair.length !== 2) {
      throw new FST_WS_GATE_INVALID_HEADER(String(pair), 'each ASGI header must be a [name, value] pair')
    }
    pairs.push([latin1Text(pair[0]), latin1Text(pair[1])])
  }
  return pairs
}

function latin1Text (value: unknown): string {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1')
  return value as string
}

function declaredLength (headers: HeaderPairs): number | undefined {
  let length: number | undefined
  for (const [name, value] of headers) {
    if (name.toLowerCase() !== 'content-length') continue
    if (!/^\d{1,15}$/.test(value.trim()) || (length !== undefined && length !== Number(value))) {
      throw new FST_WS_GATE_INVALID_HEADER(name, `"${value}" is not one valid length`)
    }
    length = Number(value)
  }
  return length
}
