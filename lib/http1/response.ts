// The HTTP/1.1 response writer: a denial as complete, correctly framed bytes
// on the socket (status line, the application's headers, Content-Length or
// chunked, Date, Connection: close), with backpressure for a streamed body,
// then the connection closed after it. Only this wire's upgrade (and the
// checks' answers) call it.
import { STATUS_CODES } from 'node:http'
import { Readable, type Duplex } from 'node:stream'
import { FST_WS_GATE_BODY_STREAM_ERROR } from '../errors.js'
import type { Denial } from '../core/denial.js'
import type { HandshakeLogger } from '../core/handshake.js'
import { allowsBody, hasHeader, type DenialLimits, type HeaderPairs } from '../core/headers.js'
import { pump } from '../body.js'

// RFC 9110 §6.6.1: an origin server with a clock sends Date on 2xx-4xx. The
// string changes once a second, so it is built once a second.
let dateCache = ''
let dateSecond = -1
function httpDate (): string {
  const now = Date.now()
  const second = Math.floor(now / 1000)
  if (second !== dateSecond) {
    dateSecond = second
    dateCache = new Date(now).toUTCString()
  }
  return dateCache
}

/** Status line and header block, framing headers included, ending in the blank line. */
function responseHead (status: number, headers: HeaderPairs, framing: string | null): string {
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`
  if (framing !== null) head += framing
  if (!hasHeader(headers, 'date')) head += `Date: ${httpDate()}\r\n`
  return head + 'Connection: close\r\n\r\n'
}

/**
 * Destroys the socket if it is still open `ms` from now: a client that stops
 * reading (or a body source that stalls) cannot hold a connection forever.
 */
export function guard (socket: Duplex, ms: number): void {
  if (ms === 0) return
  const timer = setTimeout(() => socket.destroy(), ms)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
}

/**
 * Ends the connection once everything written so far has been flushed. Reading
 * goes on meanwhile, so that unread bytes from the client cannot turn our close
 * into a reset that would destroy the response before the client reads it.
 * With `timeout`, the socket is destroyed if that takes longer.
 */
function closeAfter (socket: Duplex, last?: Buffer, timeout?: number): void {
  if (timeout !== undefined) guard(socket, timeout)
  socket.on('error', destroySelf)
  socket.resume()
  socket.once('finish', destroySelf)
  socket.end(last)
}

function destroySelf (this: Duplex): void {
  this.destroy()
}

// Header values may hold obs-text (U+0080-U+00FF): one byte each on the wire.
function latin1 (text: string): Buffer {
  return Buffer.from(text, 'latin1')
}

/** Writes a complete response with a fixed body, then closes the connection. */
function sendResponse (socket: Duplex, status: number, headers: HeaderPairs, body: Buffer | null, timeout: number): void {
  if (!allowsBody(status)) {
    closeAfter(socket, latin1(responseHead(status, headers, null)), timeout)
    return
  }
  const length = body === null ? 0 : body.length
  const head = responseHead(status, headers, `Content-Length: ${length}\r\n`)
  // One buffer, one write: the head (one byte per character) and the body.
  const bytes = Buffer.allocUnsafe(head.length + length)
  bytes.write(head, 0, 'latin1')
  if (body !== null) body.copy(bytes, head.length)
  closeAfter(socket, bytes, timeout)
}

/** Writes a prepared denial and closes the connection after it. */
export function writeDenial (socket: Duplex, denial: Denial, log: HandshakeLogger, limits: DenialLimits): void {
  const { status, headers, body } = denial
  if (body instanceof Readable) {
    guard(socket, limits.timeout)
    streamDenial(socket, status, headers, body, denial.length, limits.maxBodySize, log)
  } else {
    sendResponse(socket, status, headers, body, limits.timeout)
  }
}

// Chunked transfer coding (RFC 9112 §7.1), one chunk per stream chunk, waiting
// for the socket to drain so that a slow client cannot make us buffer the body.
// With a declared length, the bytes go out as they are, and must add up.
function streamDenial (
  socket: Duplex, status: number, headers: HeaderPairs, body: Readable, length: number | undefined, maxBodySize: number, log: HandshakeLogger
): void {
  // As while the decision was pending, a client that ends its side has left:
  // no WebSocket client half-closes to wait for a response.
  const onClose = (): void => {
    socket.destroy()
    body.destroy()
  }
  socket.on('end', onClose)
  socket.on('close', onClose)
  socket.on('error', onClose)
  socket.resume()
  const chunked = length === undefined
  socket.write(latin1(responseHead(status, headers, chunked ? 'Transfer-Encoding: chunked\r\n' : null)))
  pump(socket, body, length, maxBodySize, chunked).then(() => {
    socket.removeListener('end', onClose)
    socket.removeListener('close', onClose)
    closeAfter(socket, chunked ? LAST_CHUNK : undefined)
  }, (err: Error) => {
    body.destroy()
    if (socket.destroyed) {
      log.debug({ statusCode: status }, 'client closed the connection during the denial body')
      return
    }
    // The status line is gone; all that is left is to cut the response short,
    // which the client sees as an incomplete body.
    socket.destroy()
    log.error({ err: new FST_WS_GATE_BODY_STREAM_ERROR(err.message) }, 'denial body stream failed')
  })
}

const LAST_CHUNK = Buffer.from('0\r\n\r\n')
