// HTTP/2 test plumbing: a real Node http2 client session, an extended CONNECT
// (RFC 8441) on one of its streams, and ws's framing on that stream once the
// server answers :status 200, as a browser does over HTTP/2.
import { once } from 'node:events'
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import WebSocket from 'ws'

const requireWs = createRequire(join(dirname(require.resolve('ws')), 'index.js'))
const PerMessageDeflate = requireWs('./lib/permessage-deflate.js') as {
  new (options: object, isServer: boolean, maxPayload: number): { offer (): object, accept (offers: unknown): unknown }
  extensionName: string
}
const extension = requireWs('./lib/extension.js') as {
  parse: (header: string) => Record<string, unknown>
  format: (extensions: Record<string, unknown[]>) => string
}

export interface H2Answer {
  status: number
  headers: IncomingHttpHeaders
  /** The response body, for a refusal (empty for an accept). */
  body: string
  stream: ClientHttp2Stream
  /** The WebSocket on the stream, for an accept. */
  ws?: WebSocket
  /** Messages received since the WebSocket opened: [text, isBinary]. */
  messages: Array<[string, boolean]>
  /** The stream's RST code once it has closed. */
  closed: Promise<number>
}

/** An HTTP/2 session to the app, h2c or TLS (self-signed: not verified), once the server's first SETTINGS are in. */
export async function h2session (port: number, tls = false): Promise<ClientHttp2Session> {
  const session = tls
    ? http2.connect(`https://localhost:${port}`, { rejectUnauthorized: false })
    : http2.connect(`http://127.0.0.1:${port}`)
  session.on('error', () => {})
  await once(session, 'remoteSettings')
  return session
}

export interface ConnectOptions {
  protocols?: string[]
  headers?: Record<string, string>
  /** Offer permessage-deflate. */
  deflate?: boolean
  /** Leave out or replace pseudo-headers and the version. */
  pseudo?: Record<string, string | undefined>
}

/** Sends an extended CONNECT and reports the answer; on :status 200, a WebSocket runs on the stream. */
export function h2connect (session: ClientHttp2Session, path: string, options: ConnectOptions = {}): Promise<H2Answer> {
  const headers: Record<string, string> = {
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':path': path,
    ':scheme': 'http',
    'sec-websocket-version': '13',
    ...options.headers
  }
  if (options.protocols !== undefined) headers['sec-websocket-protocol'] = options.protocols.join(', ')
  const deflate = options.deflate === true ? new PerMessageDeflate({}, false, 0) : undefined
  if (deflate !== undefined) headers['sec-websocket-extensions'] = extension.format({ [PerMessageDeflate.extensionName]: [deflate.offer()] })
  for (const [name, value] of Object.entries(options.pseudo ?? {})) {
    if (value === undefined) delete headers[name]
    else headers[name] = value
  }
  const stream = session.request(headers, { endStream: false })
  const closed = new Promise<number>((resolve) => stream.once('close', () => { resolve(stream.rstCode as number) }))
  return new Promise((resolve, reject) => {
    stream.once('error', () => {})
    stream.once('close', () => { reject(new Error(`stream closed before a response (code ${stream.rstCode as number})`)) })
    stream.once('response', (responseHeaders) => {
      const status = responseHeaders[':status'] as number
      const messages: Array<[string, boolean]> = []
      if (status !== 200) {
        let body = ''
        stream.setEncoding('utf8')
        stream.on('data', (chunk: string) => { body += chunk })
        stream.once('end', () => { resolve({ status, headers: responseHeaders, body, stream, messages, closed }) })
        return
      }
      // closeTimeout: ws's default, which only its client and server constructors fill in.
      const ws = new WebSocket(null as unknown as string, undefined, { closeTimeout: 30_000 } as never) as WebSocket & { _isServer: boolean, _extensions: object, setSocket (s: unknown, head: Buffer, o: object): void }
      ws._isServer = false
      const accepted = responseHeaders['sec-websocket-extensions']
      if (deflate !== undefined && typeof accepted === 'string') {
        deflate.accept(extension.parse(accepted)[PerMessageDeflate.extensionName])
        ws._extensions = { [PerMessageDeflate.extensionName]: deflate }
      }
      ws.setSocket(stream, Buffer.alloc(0), { maxPayload: 0 })
      ws.on('message', (data, isBinary) => { messages.push([String(data), isBinary]) })
      ws.on('error', () => {})
      resolve({ status, headers: responseHeaders, body: '', stream, ws, messages, closed })
    })
  })
}

/** The next message on a WebSocket, as text. */
export async function nextMessage (ws: WebSocket): Promise<string> {
  const [data] = await once(ws, 'message') as [Buffer]
  return String(data)
}
