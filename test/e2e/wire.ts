// A handcrafted WebSocket client on raw TCP, for when the exact bytes matter:
// it sends an upgrade request, reads the response head, then either the body
// (a denial, by Content-Length or to the end) or the server's frames after a
// 101 (until a close frame or the first data frame). Bounded in bytes and time.
import { connect, createServer } from 'node:net'
import { ACCEPT, KEY, upgradeRequest } from '../helpers.js'

export { ACCEPT, KEY }

export interface Frame {
  opcode: number
  payload: Buffer
}

export interface WireResponse {
  statusLine: string
  /** Header lines as sent, Date's value masked. */
  head: string[]
  body: string
  /** Frames the server sent after a 101. */
  frames: Frame[]
  /** The close frame's code and reason, if one came. */
  close: [number, string] | null
  /** Whether the server (or proxy) closed the TCP connection before we did. */
  ended: boolean
}

const MAX_BYTES = 1 << 20

/** Masks the value of Date, the one header that changes from run to run. */
export function maskDate (lines: string[]): string[] {
  return lines.map((line) => /^date: /i.test(line) ? `${line.slice(0, 4)}: <date>` : line)
}

/** Parses the unmasked frames a server sends; returns those complete and the bytes left. */
export function parseFrames (bytes: Buffer): { frames: Frame[], rest: Buffer } {
  const frames: Frame[] = []
  let at = 0
  for (;;) {
    if (bytes.length - at < 2) break
    const opcode = bytes[at] & 0x0f
    let length = bytes[at + 1] & 0x7f
    let start = at + 2
    if (length === 126) {
      if (bytes.length - at < 4) break
      length = bytes.readUInt16BE(at + 2)
      start = at + 4
    } else if (length === 127) {
      if (bytes.length - at < 10) break
      length = Number(bytes.readBigUInt64BE(at + 2))
      start = at + 10
    }
    if (bytes.length < start + length) break
    frames.push({ opcode, payload: bytes.subarray(start, start + length) })
    at = start + length
  }
  return { frames, rest: bytes.subarray(at) }
}

/** A masked client frame (the mask is zero, which RFC 6455 allows: any 32 bits). */
export function clientFrame (opcode: number, payload: Buffer): Buffer {
  if (payload.length > 125) throw new Error('payload too long for this helper')
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length, 0, 0, 0, 0]), payload])
}

export function closeFrameOf (frame: Frame): [number, string] {
  return [frame.payload.readUInt16BE(0), frame.payload.subarray(2).toString('utf8')]
}

/**
 * Sends an upgrade request for `path` to `port` (extra headers replace or, with
 * null, remove the defaults) and reads the answer. After a 101 it waits for the
 * first data frame or a close frame; it answers a close frame with a close
 * frame, as a client must, so that the server can end the connection.
 */
export function upgrade (
  port: number,
  path: string,
  headers: Record<string, string | null> = {},
  waitMs = 5000
): Promise<WireResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let buffer = Buffer.alloc(0)
    let head: { statusLine: string, lines: string[], bodyStart: number } | null = null
    let ended = false
    let settled = false
    const timer = setTimeout(() => finish(new Error(`no complete answer within ${waitMs} ms: ${JSON.stringify(buffer.toString('latin1'))}`)), waitMs)

    function finish (err?: Error): void {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err !== undefined || head === null) {
        socket.destroy()
        reject(err ?? new Error(`connection ended before a response head: ${JSON.stringify(buffer.toString('latin1'))}`))
        return
      }
      const rest = buffer.subarray(head.bodyStart)
      const is101 = head.statusLine.startsWith('HTTP/1.1 101 ')
      const { frames } = is101 ? parseFrames(rest) : { frames: [] }
      const closing = frames.find((frame) => frame.opcode === 0x8)
      const result: WireResponse = {
        statusLine: head.statusLine,
        head: maskDate(head.lines),
        body: is101 ? '' : rest.toString('latin1'),
        frames,
        close: closing === undefined ? null : closeFrameOf(closing),
        ended
      }
      if (closing !== undefined && !ended) {
        // Echo the close (code only), then let the server end the connection.
        socket.end(clientFrame(0x8, closing.payload.subarray(0, 2)))
        socket.once('close', () => resolve(result))
        setTimeout(() => { socket.destroy(); resolve(result) }, waitMs).unref()
        return
      }
      socket.destroy()
      resolve(result)
    }

    function check (): void {
      if (head === null) {
        const end = buffer.indexOf('\r\n\r\n')
        if (end === -1) return
        const [statusLine, ...lines] = buffer.subarray(0, end).toString('latin1').split('\r\n')
        head = { statusLine, lines, bodyStart: end + 4 }
      }
      const rest = buffer.subarray(head.bodyStart)
      if (head.statusLine.startsWith('HTTP/1.1 101 ')) {
        const { frames } = parseFrames(rest)
        if (frames.some((frame) => frame.opcode === 0x8 || frame.opcode === 0x1 || frame.opcode === 0x2)) finish()
        return
      }
      const length = head.lines.find((line) => /^content-length:/i.test(line))
      if (length !== undefined && rest.length >= Number(length.slice(length.indexOf(':') + 1).trim())) finish()
    }

    socket.on('connect', () => socket.write(upgradeRequest(path, headers)))
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      if (buffer.length > MAX_BYTES) finish(new Error('answer too long'))
      else check()
    })
    socket.on('end', () => { ended = true; finish() })
    socket.on('error', (err) => { ended = true; if (head !== null) finish(); else finish(err) })
  })
}

/** A free TCP port on 127.0.0.1 (free when this returns; the caller retries if it was taken since). */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}
