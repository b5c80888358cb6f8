// The hand-over of an upgrade to ws, in one place, for both wires. ws's own
// handleUpgrade() would check the request again, pick the subprotocol through
// a handleProtocols callback and take extra 101 headers from a 'headers'
// listener, which must then find out which upgrade they are for. Here the
// gate does what handleUpgrade does before the 101 (ws's `path` option,
// permessage-deflate negotiation, verifyClient) with its own answers, then
// calls ws's completeUpgrade() with the chosen subprotocol as the only one
// offered and the extra headers for its one synchronous 'headers' event.
// Over HTTP/2 (RFC 8441) there is no 101 for ws to write: the wire answers
// :status 200 on the stream, and the WebSocket is made on the stream as
// completeUpgrade() makes it on a socket (ws's framing needs only a Duplex).
// completeUpgrade(), setSocket(), PerMessageDeflate and the server's client
// tracking are ws internals: package.json pins ws's minor version, and the
// suite runs through them.
import { STATUS_CODES, type IncomingMessage } from 'node:http'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { Duplex } from 'node:stream'
import type { WebSocket, WebSocketServer } from 'ws'
import { FST_WS_GATE_BAD_REQUEST, FST_WS_GATE_SHUTTING_DOWN } from '../errors.js'
import { errorDenial, type Denial } from '../core/denial.js'
import type { HandshakeLogger } from '../core/handshake.js'
import { checkStatus, hasHeader, RETRY_LATER, toHeaderPairs, type HeaderPairs, type HeadersInput } from '../core/headers.js'

type Verified = (verified: boolean, code?: number, message?: string, headers?: HeadersInput) => void
type VerifyClient = (info: { origin: string | undefined, secure: boolean, req: IncomingMessage }, done?: Verified) => boolean | undefined
type ChooseProtocol = (protocols: Set<string>, req: IncomingMessage) => string | false
/** What ws calls once it has written the 101: the WebSocket, and the request. */
export type Completed = (ws: WebSocket, req: IncomingMessage) => void

interface Internals {
  completeUpgrade (extensions: object, key: string, protocols: ReadonlySet<string>, req: IncomingMessage, socket: Duplex, head: Buffer, done: (ws: WebSocket, req: IncomingMessage) => void): void
  _shouldEmitClose: boolean
  _state: number
}

// What completeUpgrade() sets on a WebSocket it makes, and calls.
interface WebSocketInternals {
  _protocol: string
  _extensions: object
  setSocket (socket: Duplex, head: Buffer, options: object): void
}

interface Extension {
  accept (offers: unknown): unknown
  readonly params: unknown
}

// ws's own modules, from the copy @fastify/websocket uses (its WebSocketServer
// and these must agree).
const requireWs = createRequire(require.resolve('ws', { paths: [dirname(require.resolve('@fastify/websocket'))] }))
const PerMessageDeflate = requireWs(join(dirname(requireWs.resolve('ws')), 'lib', 'permessage-deflate.js')) as {
  new (options: object): Extension
  extensionName: string
}
const { parse: parseExtensions, format: formatExtensions } = requireWs(join(dirname(requireWs.resolve('ws')), 'lib', 'extension.js')) as {
  parse: (header: string) => Record<string, unknown>
  format: (extensions: Record<string, unknown[]>) => string
}
// ws's WebSocketServer states: past RUNNING, it completes no upgrade.
const CLOSED = 2

/** What the hand-over needs of an upgrade (an Upgrading): its request and socket, and a way to deny it. */
export interface Upgrading {
  readonly req: IncomingMessage
  /** The connection (HTTP/1.1), or the upgrade's stream (HTTP/2). */
  readonly socket: Duplex
  readonly head: Buffer
  readonly offered: readonly string[]
  deny (denial: Denial, log: HandshakeLogger): void
  /**
   * HTTP/2 only: sends `:status 200` with these headers on the stream; false
   * when the stream has gone (the wire has reported it). Over HTTP/1.1, ws
   * writes the 101.
   */
  respond?: (headers: HeaderPairs) => boolean
}

type Responding = Required<Pick<Upgrading, 'respond'>>

const NO_HEADERS: HeaderPairs = []
// ws only reads these: shared by every upgrade that negotiates no extension and selects no subprotocol.
const NO_EXTENSIONS = Object.freeze({})
const NO_PROTOCOLS: ReadonlySet<string> = new Set()

export class HandOver {
  readonly #wss: WebSocketServer & Internals
  readonly #verifyClient: VerifyClient | undefined
  readonly #chooseProtocol: ChooseProtocol | undefined
  readonly #closing: () => boolean
  // The extra headers of the 101 being written now, for the 'headers' event
  // that completeUpgrade() emits synchronously.
  #headers: HeaderPairs = NO_HEADERS

  /** Takes over `wss`'s verifyClient and handleProtocols: from now on the gate calls them. */
  constructor (wss: WebSocketServer, closing: () => boolean) {
    this.#wss = wss as WebSocketServer & Internals
    const options = wss.options as { verifyClient?: VerifyClient | null, handleProtocols?: ChooseProtocol | null }
    this.#verifyClient = options.verifyClient ?? undefined
    this.#chooseProtocol = options.handleProtocols ?? undefined
    // ws would otherwise call handleProtocols again, on the one protocol the gate offers it.
    options.handleProtocols = null
    this.#closing = closing
    wss.on('headers', (lines: string[]) => {
      const headers = this.#headers
      for (let i = 0; i < headers.length; i++) lines.push(`${headers[i][0]}: ${headers[i][1]}`)
    })
  }

  /**
   * Completes the handshake: `protocol` and `headers` as a decision said
   * (`headers` undefined: a route without a decision, where the app's
   * handleProtocols, or ws's first-offered rule, chooses). Whatever ws's
   * options refuse is denied through `upgrade`.
   */
  complete (upgrade: Upgrading, log: HandshakeLogger, protocol: string | undefined, headers: HeaderPairs | undefined, done: Completed): void {
    const { req } = upgrade
    const wss = this.#wss
    // ws's `path` option: it would answer any other path 400 itself.
    if (!wss.shouldHandle(req)) {
      upgrade.deny(errorDenial(new FST_WS_GATE_BAD_REQUEST(`This WebSocket server serves ${JSON.stringify(wss.options.path)} only`)), log)
      return
    }
    let extensions: Record<string, Extension> = NO_EXTENSIONS
    const offer = req.headers['sec-websocket-extensions']
    if (wss.options.perMessageDeflate !== undefined && wss.options.perMessageDeflate !== false && offer !== undefined) {
      const deflate = new PerMessageDeflate({ ...(wss.options.perMessageDeflate as object), isServer: true, maxPayload: wss.options.maxPayload })
      try {
        const offers = parseExtensions(offer)
        if (offers[PerMessageDeflate.extensionName] !== undefined) {
          deflate.accept(offers[PerMessageDeflate.extensionName])
          extensions = { [PerMessageDeflate.extensionName]: deflate }
        }
      } catch {
        upgrade.deny(errorDenial(new FST_WS_GATE_BAD_REQUEST('Invalid or unacceptable Sec-WebSocket-Extensions header')), log)
        return
      }
    }
    const chosen = headers !== undefined ? protocol : this.#choose(upgrade)
    const verify = this.#verifyClient
    if (verify === undefined) {
      this.#finish(upgrade, log, extensions, chosen, headers, done)
      return
    }
    const info = { origin: req.headers.origin, secure: isSecure(req), req }
    if (verify.length !== 2) {
      if (verify(info) as unknown as boolean) this.#finish(upgrade, log, extensions, chosen, headers, done)
      else refuse(upgrade, log)
      return
    }
    // Nobody else listens for the socket's errors while the app's verifyClient decides.
    const { socket } = upgrade
    socket.on('error', destroySocket)
    verify(info, (verified, code, message, refusal) => {
      socket.removeListener('error', destroySocket)
      if (verified) this.#finish(upgrade, log, extensions, chosen, headers, done)
      else refuse(upgrade, log, code, message, refusal)
    })
  }

  #finish (upgrade: Upgrading, log: HandshakeLogger, extensions: object, chosen: string | undefined, headers: HeaderPairs | undefined, done: Completed): void {
    // Verified after shutdown began: no 101 now.
    if (this.#closing()) {
      upgrade.deny(errorDenial(new FST_WS_GATE_SHUTTING_DOWN(), RETRY_LATER), log)
      return
    }
    const { req } = upgrade
    if (upgrade.respond !== undefined) {
      this.#open(upgrade as Upgrading & Responding, extensions as Record<string, Extension>, chosen, headers, done)
      return
    }
    this.#headers = headers ?? NO_HEADERS
    try {
      this.#wss.completeUpgrade(extensions, req.headers['sec-websocket-key'] as string, chosen === undefined ? NO_PROTOCOLS : new Set([chosen]), req, upgrade.socket, upgrade.head, done)
    } finally {
      this.#headers = NO_HEADERS
    }
  }

  // Over HTTP/2: the wire's :status 200, then a WebSocket on the stream, made
  // and tracked as completeUpgrade() does (so that shutdown's 1001 reaches it).
  #open (upgrade: Upgrading & Responding, extensions: Record<string, Extension>, chosen: string | undefined, headers: HeaderPairs | undefined, done: Completed): void {
    const wss = this.#wss
    const fields: HeaderPairs = []
    if (chosen !== undefined) fields.push(['sec-websocket-protocol', chosen])
    const deflate = extensions[PerMessageDeflate.extensionName]
    if (deflate !== undefined) fields.push(['sec-websocket-extensions', formatExtensions({ [PerMessageDeflate.extensionName]: [deflate.params] })])
    if (headers !== undefined) fields.push(...headers)
    if (!upgrade.respond(fields)) return
    const options = wss.options as typeof wss.options & { WebSocket: new (address: null, protocols: undefined, options: object) => WebSocket }
    const ws = new options.WebSocket(null, undefined, options) as WebSocket & WebSocketInternals
    if (chosen !== undefined) ws._protocol = chosen
    if (deflate !== undefined) ws._extensions = extensions
    ws.setSocket(upgrade.socket, upgrade.head, options)
    const { clients } = wss
    if (clients !== undefined) {
      clients.add(ws)
      ws.on('close', () => {
        clients.delete(ws)
        if (wss._shouldEmitClose && clients.size === 0) process.nextTick(closed, wss)
      })
    }
    done(ws, upgrade.req)
  }

  // A route without a decision of its own: the app's handleProtocols, or the first offered.
  #choose (upgrade: Upgrading): string | undefined {
    const { offered } = upgrade
    if (offered.length === 0) return undefined
    if (this.#chooseProtocol === undefined) return offered[0]
    const chosen = this.#chooseProtocol(new Set(offered), upgrade.req)
    return typeof chosen === 'string' ? chosen : undefined
  }
}

// verifyClient's refusal, as ws would have written it (its status, default
// 401; its message, default the status's phrase, as text/html; its headers),
// but through the gate's writer, which checks what goes on the wire.
function refuse (upgrade: Upgrading, log: HandshakeLogger, code?: number, message?: string, headers?: HeadersInput): void {
  let status: number
  let pairs: HeaderPairs
  try {
    status = checkStatus(code === undefined || code === 0 ? 401 : code)
    pairs = toHeaderPairs(headers)
  } catch (err) {
    log.error({ err }, 'invalid verifyClient refusal')
    upgrade.deny(errorDenial({ statusCode: 500, message: 'Internal Server Error' }), log)
    return
  }
  // ws's type unless verifyClient gave its own.
  if (!hasHeader(pairs, 'content-type')) pairs.unshift(['Content-Type', 'text/html'])
  upgrade.deny({ status, headers: pairs, body: Buffer.from(message ?? STATUS_CODES[status] ?? '') }, log)
}

function isSecure (req: IncomingMessage): boolean {
  const socket = req.socket as (IncomingMessage['socket'] & { authorized?: boolean, encrypted?: boolean }) | undefined
  return socket?.authorized === true || socket?.encrypted === true
}

// What ws does once its last client has gone after close().
function closed (wss: WebSocketServer & Internals): void {
  wss._state = CLOSED
  wss.emit('close')
}

function destroySocket (this: Duplex): void {
  this.destroy()
}
