// The HTTP/2 response writer: a denial as one HEADERS frame and its DATA on
// the upgrade's stream (and the header block of an accept's :status 200), a streamed body
// with backpressure, then the stream closed with NO_ERROR once the body is
// out. The session, and every other stream on it, lives on. Only this wire's
// upgrade (and the checks' answers) call it.
import { constants, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import { Readable } from 'node:stream'
import { FST_WS_GATE_BODY_STREAM_ERROR } from '../errors.js'
import type { Denial } from '../core/denial.js'
import type { HandshakeLogger } from '../core/handshake.js'
import { allowsBody, type DenialLimits, type HeaderPairs } from '../core/headers.js'
import { pump } from '../body.js'

const { NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = constants

// Headers about the connection: HTTP/2 has none (RFC 9113 §8.2.2), and Node
// refuses to send them. The core already refuses Connection, Upgrade and
// Transfer-Encoding in what an application sends; these mean nothing here.
const CONNECTION_SPECIFIC = new Set(['keep-alive', 'proxy-connection', 'te', 'http2-settings'])

/** A header block: the status, then the headers, names lower-cased, repeated names as lists. */
export function toFields (status: number, headers: HeaderPairs): OutgoingHttpHeaders {
  const fields: OutgoingHttpHeaders = { ':status': status }
  for (let i = 0; i < headers.length; i++) {
    const name = headers[i][0].toLowerCase()
    if (CONNECTION_SPECIFIC.has(name)) continue
    const value = headers[i][1]
    const had = fields[name] as string | string[] | undefined
    // Node sends a list as repeated fields, and allows it only for some
    // names; a repeated field is one field with the values joined (RFC 9110
    // §5.3), except Set-Cookie, which cannot be joined.
    if (had === undefined) fields[name] = name === 'set-cookie' ? [value] : value
    else if (Array.isArray(had)) had.push(value)
    else fields[name] = `${had}, ${value}`
  }
  return fields
}

/**
 * Closes the stream if it is still open `ms` from now: a client that stops
 * reading (flow control), or a body source that stalls, cannot hold it
 * forever. CANCEL: the answer was cut short.
 */
export function guard (stream: ServerHttp2Stream, ms: number): void {
  if (ms === 0) return
  const timer = setTimeout(() => stream.close(NGHTTP2_CANCEL), ms)
  timer.unref()
  stream.once('close', () => clearTimeout(timer))
}

// Once our side has ended and everything is flushed, the client's side is
// closed too: a WebSocket client never ends its side of the stream, and a
// stream it left open would hold a slot of the session's concurrency.
function closeWhenFinished (stream: ServerHttp2Stream): void {
  stream.once('finish', () => { stream.close(NGHTTP2_NO_ERROR) })
}

/** Writes a prepared denial on the stream, then closes it; the session lives on. */
export function writeDenial (stream: ServerHttp2Stream, denial: Denial, log: HandshakeLogger, limits: DenialLimits): void {
  const { status, headers, body } = denial
  if (stream.destroyed || stream.closed) return
  guard(stream, limits.timeout)
  closeWhenFinished(stream)
  // As while the decision was pending, data the client sends is not read
  // (flow control bounds it); its stream closing ends the answer.
  if (body === null || !allowsBody(status)) {
    const fields = toFields(status, headers)
    if (allowsBody(status)) fields['content-length'] = 0
    stream.respond(fields, { endStream: true })
    return
  }
  if (!(body instanceof Readable)) {
    const fields = toFields(status, headers)
    fields['content-length'] = body.length
    stream.respond(fields)
    stream.end(body)
    return
  }
  const fields = toFields(status, headers)
  if (denial.length !== undefined) fields['content-length'] = denial.length
  stream.respond(fields)
  const onClose = (): void => { body.destroy() }
  stream.once('close', onClose)
  pump(stream, body, denial.length, limits.maxBodySize, false).then(() => {
    stream.removeListener('close', onClose)
    stream.end()
  }, (err: Error) => {
    body.destroy()
    if (stream.destroyed) {
      log.debug({ statusCode: status }, 'client closed the stream during the denial body')
      return
    }
    // The status is gone; all that is left is to cut the response short,
    // which the client sees as a reset stream.
    stream.close(NGHTTP2_INTERNAL_ERROR)
    log.error({ err: new FST_WS_GATE_BODY_STREAM_ERROR(err.message) }, 'denial body stream failed')
  })
}
