// One ASGI WebSocket connection: the application's receive() and send(), as a
// state machine over the handshake engine. Fastify-free: it takes the engine,
// a logger and (after accept) a `ws` WebSocket.
//
//   handshake ─accept──────────▶ connected ─close──▶ ended
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
import { accept, reject } from '../core/decision.js'
import type { Handshake, HandshakeLogger } from '../core/handshake.js'
import { allowsBody, checkStatus, toHeaderPairs, trimOWS, type HeaderPairs } from '../core/headers.js'
import type {
  AsgiApp, AsgiHeaders, AsgiReceiveMessage, AsgiSendMessage, WebSocketDisconnectEvent, WebSocketScope
} from './types.js'

type Phase = 'handshake' | 'response' | 'connected' | 'ended' | 'gone'

// Incoming frames the application has not received yet: past either high
// mark the socket stops reading, so a slow application cannot be flooded;
// below both low marks it reads again. Once the application has closed, the
// socket must go on reading (the client's close frame ends the close
// handshake), so the high marks become a cap: what does not fit is dropped.
// Once the application has returned (or raised), nothing is queued at all.
const HIGH_COUNT = 64
const LOW_COUNT = 16
const HIGH_BYTES = 1024 * 1024
const LOW_BYTES = 256 * 1024

const EMPTY = Buffer.alloc(0)

export class AsgiSession {
  readonly #handshake: Handshake
  readonly #log: HandshakeLogger
  #phase: Phase = 'handshake'
  readonly #queue: AsgiReceiveMessage[] = [{ type: 'websocket.connect' }]
  readonly #sizes: number[] = [0]
  #queuedBytes = 0
  #paused = false
  // The application has returned or raised: no one will receive() again.
  #done = false
  #dropping = false
  readonly #waiting: Array<(message: AsgiReceiveMessage) => void> = []
  #disconnect: WebSocketDisconnectEvent | undefined
  #ws: WebSocket | undefined
  #body: AsgiBody | undefined
  // The error a refused decision already logged; if the application lets it
  // propagate, it is not logged a second time.
  #reported: unknown

  constructor (handshake: Handshake, log: HandshakeLogger) {
    this.#handshake = handshake
    this.#log = log
    handshake.onAbandoned = () => {
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
      this.#push(isBinary ? { type: 'websocket.receive', bytes: data } : { type: 'websocket.receive', text: data.toString('utf8') }, data.length)
    })
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.#phase === 'connected') this.#phase = 'gone'
      this.#end({ type: 'websocket.disconnect', code, reason: reason.toString('utf8') })
    })
  }

  readonly receive = (): Promise<AsgiReceiveMessage> => {
    const next = this.#queue.shift()
    if (next !== undefined) {
      this.#queuedBytes -= this.#sizes.shift() as number
      if (this.#paused && this.#queue.length <= LOW_COUNT && this.#queuedBytes <= LOW_BYTES) this.#resume()
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
      default: throw new FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE(
        `Unexpected ASGI message '${message.type}', after sending 'websocket.close' or response already completed.`)
    }
  }

  #sendHandshake (message: AsgiSendMessage): void {
    // An accept is being counted against its connection limits: the decision is taken.
    if (this.#handshake.admitting) {
      throw new FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE(`Unexpected ASGI message '${message.type}', after sending 'websocket.accept'.`)
    }
    switch (message.type) {
      case 'websocket.accept':
        this.#decide(() => {
          this.#handshake.applyOrThrow(accept({ protocol: message.subprotocol ?? undefined, headers: asgiHeaders(message.headers) }))
        })
        // ws completes a valid upgrade synchronously; if it did not, it has
        // answered the client itself (e.g. a malformed extension offer). An
        // accept that waits for its connection limits goes out later: it is
        // connected then, or abandoned (over a limit, the store down).
        if (this.#handshake.admitting) {
          this.#handshake.onAdmitted = () => { if (this.#ws === undefined) this.#gone() }
          return
        }
        if (this.#ws === undefined) this.#gone()
        return
      case 'websocket.close':
        // A 403 with an empty body, as in the reference servers; as a close
        // frame (rejectVia), 4403 with the message's reason.
        this.#decide(() => { this.#handshake.applyOrThrow(this.#handshake.closeFrame ? reject(403, message.reason ?? '') : reject()) })
        this.#ended()
        return
      case 'websocket.http.response.start':
        this.#decide(() => { this.#start(message.status, message.headers) })
        return
      default:
        throw new FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE(
          `Expected ASGI message 'websocket.accept', 'websocket.close' or 'websocket.http.response.start' but got '${(message as { type: string }).type}'.`)
    }
  }

  // A decision the engine refuses (a bad status, header or subprotocol) is a
  // 500 for the client and an error for the application's send().
  #decide (apply: () => void): void {
    try {
      apply()
    } catch (err) {
      this.#handshake.invalid(err)
      this.#reported = err
      this.#ended()
      throw err
    }
  }

  #start (rawStatus: unknown, rawHeaders: AsgiHeaders | undefined): void {
    const status = checkStatus(rawStatus)
    let headers = toHeaderPairs(asgiHeaders(rawHeaders), { allowLength: true })
    const length = declaredLength(headers)
    // RFC 9110 §8.6: a 204 carries no Content-Length (a 304 may keep it).
    if (status === 204) headers = headers.filter(([name]) => name.toLowerCase() !== 'content-length')
    // rejectVia 'close-frame' (4000 + status): the body has nowhere to go.
    const body = allowsBody(status) && !this.#handshake.closeFrame ? new AsgiBody() : null
    // Through the handshake like any reject(), so that its limits apply
    // before anything goes out (a declared length above denialMaxBodySize is refused).
    this.#handshake.respond({ status, headers, body, length })
    this.#phase = 'response'
    if (body === null) {
      // A 204/304 (or a close frame) is complete at start: the client is told,
      // and so is the app, which may still send its (discarded) body messages.
      this.#end({ type: 'websocket.disconnect', code: 1006 })
      return
    }
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
    if (!more) this.#ended()
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
      const data = text != null ? toText(message.type, text) : toBytes(message.type, 'bytes', bytes)
      // The client may have started its close handshake: then it is leaving.
      if (ws.readyState !== ws.OPEN) throw new FST_WS_GATE_ASGI_CLIENT_DISCONNECTED(`'${message.type}'`)
      await new Promise<void>((resolve, reject) => {
        ws.send(data, { binary: text == null }, (err) => {
          if (err == null) resolve()
          else reject(new FST_WS_GATE_ASGI_CLIENT_DISCONNECTED(`'${message.type}' (${err.message})`))
        })
      })
      return
    }
    if (message.type === 'websocket.close') {
      try {
        ws.close(message.code ?? 1000, message.reason ?? '')
      } catch (err) {
        throw new FST_WS_GATE_ASGI_INVALID_MESSAGE(`'${message.type}'`, (err as Error).message)
      }
      this.#closing()
      return
    }
    throw new FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE(`Expected ASGI message 'websocket.send' or 'websocket.close', but got '${message.type}'.`)
  }

  #returned (): void {
    this.#finished()
    switch (this.#phase) {
      case 'handshake':
        this.#handshake.invalid(new FST_WS_GATE_ASGI_NO_DECISION())
        this.#ended()
        return
      case 'response':
        // The engine logs it once, and cuts the response short.
        this.#fail(new FST_WS_GATE_ASGI_INCOMPLETE_RESPONSE())
        return
      case 'connected':
        (this.#ws as WebSocket).close(1000)
        this.#closing()
    }
  }

  #raised (err: unknown): void {
    this.#finished()
    switch (this.#phase) {
      case 'handshake':
        this.#ended()
        this.#handshake.fail(err)
        return
      case 'response':
        this.#fail(err as Error)
        return
      case 'connected':
        this.#log.error({ err }, 'ASGI application failed; closing the connection with 1011')
        ;(this.#ws as WebSocket).close(1011)
        this.#closing()
        return
      default:
        if (err !== this.#reported) this.#log.error({ err }, 'ASGI application failed after the connection ended')
    }
  }

  // Messages still queued will never be received: they are let go at once,
  // and #push queues no more.
  #finished (): void {
    this.#done = true
    this.#queue.length = 0
    this.#sizes.length = 0
    this.#queuedBytes = 0
  }

  // After the app's close, ws must read the client's close frame to finish
  // the close handshake, even if the app had fallen behind and we paused.
  #closing (): void {
    this.#phase = 'ended'
    if (this.#paused) this.#resume()
  }

  // A denial that cannot be completed: a streamed body is cut short (the
  // engine logs why); a 204/304 was complete at start, so only the log is left.
  #fail (err: Error): void {
    if (this.#body === undefined) this.#log.error({ err }, 'ASGI application failed after its denial was sent')
    else this.#body.fail(err)
    this.#ended()
  }

  // After a denial, or a client that left during the handshake, the app's
  // next receive() is a disconnect with 1006, as in the reference servers.
  #ended (): void {
    this.#phase = 'ended'
    this.#end({ type: 'websocket.disconnect', code: 1006 })
  }

  #gone (): void {
    this.#phase = 'gone'
    this.#end({ type: 'websocket.disconnect', code: 1006 })
  }

  #push (message: AsgiReceiveMessage, size: number): void {
    const waiting = this.#waiting.shift()
    if (waiting !== undefined) {
      waiting(message)
      return
    }
    const connected = this.#phase === 'connected'
    // Once the app has closed, ws must go on reading to see the client's close
    // frame: a client that ignores our close frame and floods us must not
    // grow the queue past the high marks. Once it has returned, no one reads it.
    if (!connected && (this.#done || this.#queue.length >= HIGH_COUNT || this.#queuedBytes + size > HIGH_BYTES)) {
      if (!this.#dropping) {
        this.#dropping = true
        this.#log.debug({ queued: this.#queue.length, queuedBytes: this.#queuedBytes }, 'ASGI application has closed: dropping the messages it will not receive')
      }
      return
    }
    this.#queue.push(message)
    this.#sizes.push(size)
    this.#queuedBytes += size
    // Only while connected: pausing stops the socket from reading at all.
    if (connected && !this.#paused && (this.#queue.length >= HIGH_COUNT || this.#queuedBytes >= HIGH_BYTES)) {
      this.#paused = true
      ;(this.#ws as WebSocket).pause()
    }
  }

  #resume (): void {
    this.#paused = false
    ;(this.#ws as WebSocket).resume()
  }

  #end (message: WebSocketDisconnectEvent): void {
    // A 204/304 told the app at start; its final body message comes later.
    if (this.#disconnect !== undefined) return
    this.#disconnect = message
    const waiting = this.#waiting.splice(0)
    if (waiting.length === 0) {
      this.#queue.push(message)
      this.#sizes.push(0)
    }
    for (const resolve of waiting) resolve(message)
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
    const digits = trimOWS(value)
    if (!/^\d{1,15}$/.test(digits) || (length !== undefined && length !== Number(digits))) {
      throw new FST_WS_GATE_INVALID_HEADER(name, `${JSON.stringify(value)} is not one valid length`)
    }
    length = Number(digits)
  }
  return length
}
