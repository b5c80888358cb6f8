// A denial's streamed body, written into a socket (HTTP/1.1) or a stream
// (HTTP/2) with backpressure and within the body limit: shared by both wires.
import type { Readable, Writable } from 'node:stream'
import { describe } from './core/denial.js'

const CRLF = Buffer.from('\r\n')

/**
 * Writes `body` into `sink`, waiting for it to drain, so that a slow client
 * cannot make us buffer the body. `chunked`: HTTP/1.1's chunked coding (RFC
 * 9112 §7.1), one chunk per stream chunk; otherwise the bytes go out as they
 * are, and must add up to `length` when one was declared. When the client
 * leaves, the wire destroys the body, which ends this loop with an error: the
 * loop itself never needs to look at the sink.
 */
export async function pump (sink: Writable, body: Readable, length: number | undefined, maxBodySize: number, chunked: boolean): Promise<void> {
  let sent = 0
  for await (const chunk of body) {
    const bytes: unknown = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`a stream chunk must be a string or bytes, got ${describe(bytes)}`)
    if (bytes.length === 0) continue
    sent += bytes.length
    if (sent > maxBodySize) throw new RangeError(`the body is longer than the ${maxBodySize} bytes the denial body limit allows`)
    if (length !== undefined && sent > length) throw new RangeError(`the body is longer than its Content-Length of ${length}`)
    let flushed: boolean
    if (chunked) {
      sink.write(Buffer.from(`${bytes.length.toString(16)}\r\n`, 'latin1'))
      sink.write(bytes)
      flushed = sink.write(CRLF)
    } else {
      flushed = sink.write(bytes)
    }
    if (!flushed) await drained(sink)
  }
  if (length !== undefined && sent < length) throw new RangeError(`the body ended ${length - sent} bytes short of its Content-Length of ${length}`)
}

function drained (sink: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      sink.removeListener('drain', done)
      sink.removeListener('close', done)
      resolve()
    }
    sink.on('drain', done)
    sink.on('close', done)
  })
}
