// ASGI WebSocket types, field for field as in asgiref's specs/www.rst
// (WebSocket, spec_version 2.4) and specs/extensions.rst ("WebSocket Denial
// Response"). Messages are discriminated unions on `type`, so a typo in a type
// does not compile. Where the spec has bytes, an application may send strings.

/** Bytes, or a string (sent as UTF-8 in bodies and frames, as Latin-1 in headers). */
export type Bytes = Uint8Array | string

/** Header pairs as ASGI has them: ordered, duplicates kept. */
export type AsgiHeaders = Iterable<readonly [Bytes, Bytes]>

export interface WebSocketScope {
  type: 'websocket'
  asgi: { version: '3.0', spec_version: '2.4' }
  http_version: '1.1' | '2'
  scheme: 'ws' | 'wss'
  /** The path, percent-decoded as UTF-8. */
  path: string
  /** The path as it came on the wire, without the query string. */
  raw_path: Buffer
  /** The query string, without the `?`, as it came on the wire. */
  query_string: Buffer
  root_path: string
  /** Lower-cased names and values, as bytes, in order, duplicates kept. */
  headers: Array<[Buffer, Buffer]>
  client: [host: string, port: number] | null
  server: [host: string, port: number] | null
  subprotocols: string[]
  extensions: { 'websocket.http.response': Record<string, never> }
}

// `bytes` and `text` are declared (as never present) on the other receive
// events too, so that `m.text ?? m.bytes` compiles on the union.
export interface WebSocketConnectEvent { type: 'websocket.connect', bytes?: undefined, text?: undefined }
export interface WebSocketReceiveEvent { type: 'websocket.receive', bytes?: Buffer, text?: string }
export interface WebSocketDisconnectEvent { type: 'websocket.disconnect', code: number, reason?: string, bytes?: undefined, text?: undefined }
export type AsgiReceiveMessage = WebSocketConnectEvent | WebSocketReceiveEvent | WebSocketDisconnectEvent

export interface WebSocketAcceptEvent { type: 'websocket.accept', subprotocol?: string | null, headers?: AsgiHeaders }
export interface WebSocketCloseEvent { type: 'websocket.close', code?: number, reason?: string | null }
export interface WebSocketSendEvent { type: 'websocket.send', bytes?: Bytes | null, text?: string | null }
export interface WebSocketResponseStartEvent { type: 'websocket.http.response.start', status: number, headers?: AsgiHeaders }
export interface WebSocketResponseBodyEvent { type: 'websocket.http.response.body', body?: Bytes, more_body?: boolean }
export type AsgiSendMessage =
  | WebSocketAcceptEvent
  | WebSocketCloseEvent
  | WebSocketSendEvent
  | WebSocketResponseStartEvent
  | WebSocketResponseBodyEvent

export type AsgiReceive = () => Promise<AsgiReceiveMessage>
export type AsgiSend = (message: AsgiSendMessage) => Promise<void>
export type AsgiApp = (scope: WebSocketScope, receive: AsgiReceive, send: AsgiSend) => Promise<void> | void
