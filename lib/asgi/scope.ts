// Builds an ASGI WebSocket scope from a Node request: plain values in, plain
// values out, so any face (Fastify, node:http) can use it.
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { WebSocketScope } from './types.js'

export function buildScope (req: IncomingMessage, subprotocols: readonly string[], rootPath: string): WebSocketScope {
  const url = req.url as string
  const mark = url.indexOf('?')
  const rawPath = mark === -1 ? url : url.slice(0, mark)
  const query = mark === -1 ? '' : url.slice(mark + 1)
  const headers: Array<[Buffer, Buffer]> = []
  const raw = req.rawHeaders
  // Over HTTP/2 the request's pseudo-headers are not headers; its :authority
  // is the Host header (RFC 9113 §8.3.1), as hypercorn gives it.
  let authority: string | undefined
  let host = false
  // Node hands header bytes over as Latin-1 strings: Latin-1 turns them back into the same bytes.
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    if (name.charCodeAt(0) === COLON) {
      if (name === ':authority') authority = raw[i + 1]
      continue
    }
    if (name === 'host') host = true
    headers.push([Buffer.from(name, 'latin1'), Buffer.from(raw[i + 1], 'latin1')])
  }
  if (authority !== undefined && !host) headers.unshift([Buffer.from('host'), Buffer.from(authority, 'latin1')])
  const socket = req.socket
  return {
    type: 'websocket',
    asgi: { version: '3.0', spec_version: '2.4' },
    http_version: req.httpVersion === '2.0' ? '2' : '1.1',
    scheme: (socket as TLSSocket).encrypted === true ? 'wss' : 'ws',
    path: percentDecode(rawPath),
    raw_path: Buffer.from(rawPath, 'latin1'),
    query_string: Buffer.from(query, 'latin1'),
    root_path: rootPath,
    headers,
    client: address(socket.remoteAddress, socket.remotePort),
    server: address(socket.localAddress, socket.localPort),
    subprotocols: [...subprotocols],
    extensions: { 'websocket.http.response': {} }
  }
}

function address (host: string | undefined, port: number | undefined): [string, number] | null {
  return host === undefined || port === undefined ? null : [host, port]
}

const COLON = 0x3a
const HEX = /^[0-9A-Fa-f]{2}$/

/**
 * Percent-decoding that never throws, as Python's urllib.parse.unquote (what
 * the reference servers use): a `%` not followed by two hex digits stays as
 * it is, and bytes that are not UTF-8 become U+FFFD.
 */
export function percentDecode (raw: string): string {
  if (!raw.includes('%')) return raw
  const bytes: number[] = []
  for (let i = 0; i < raw.length; i++) {
    const pair = raw.slice(i + 1, i + 3)
    if (raw[i] === '%' && HEX.test(pair)) {
      bytes.push(parseInt(pair, 16))
      i += 2
    } else {
      bytes.push(raw.charCodeAt(i) & 0xff)
    }
  }
  return Buffer.from(bytes).toString('utf8')
}
