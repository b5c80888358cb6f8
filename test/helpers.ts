// Shared test plumbing: a real Fastify server on 127.0.0.1:0 with its log lines
// captured, a real `ws` client, and raw TCP for when the exact bytes matter.
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import type { IncomingHttpHeaders } from 'node:http'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import WebSocket from 'ws'
import fastifyWsGate, { type FastifyWsGateOptions } from '../lib/index.js'

export interface LogLine {
  level: number
  msg: string
  [key: string]: unknown
}

export interface TestApp {
  app: FastifyInstance
  port: number
  logs: LogLine[]
}

interface Teardown { teardown (fn: () => unknown): void }

/** A Fastify app with fastify-ws-gate registered, routes added by `routes`, listening on loopback. */
export async function start (
  t: Teardown,
  routes: (app: FastifyInstance) => void | Promise<void>,
  options: FastifyWsGateOptions | null = {},
  serverOptions: FastifyServerOptions = {}
): Promise<TestApp> {
  const logs: LogLine[] = []
  const app = Fastify({
    ...serverOptions,
    logger: { level: 'debug', stream: { write: (line: string) => { logs.push(JSON.parse(line)) } } }
  })
  if (options !== null) await app.register(fastifyWsGate, options)
  await routes(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { app, port: address.port, logs }
}

export type Outcome =
  | {
    accepted: true
    ws: WebSocket
    protocol: string
    headers: IncomingHttpHeaders
    first: Promise<string>
    /** Every message received since the connection opened: [data as text, isBinary]. */
    messages: Array<[string, boolean]>
  }
  | { accepted: false, statusCode: number, statusMessage: string, headers: IncomingHttpHeaders, body: string }

/** Opens a WebSocket with `ws` and reports what the client saw: the 101 or the denial. */
export function connectWs (
  port: number,
  path: string,
  options: { protocols?: string[], headers?: Record<string, string> } = {}
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, options.protocols ?? [], { headers: options.headers })
    let upgradeHeaders: IncomingHttpHeaders = {}
    const first = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))))
    const messages: Array<[string, boolean]> = []
    ws.on('message', (data, isBinary) => { messages.push([String(data), isBinary]) })
    ws.on('upgrade', (res) => { upgradeHeaders = res.headers })
    ws.on('open', () => resolve({ accepted: true, ws, protocol: ws.protocol, headers: upgradeHeaders, first, messages }))
    ws.on('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({
        accepted: false,
        statusCode: res.statusCode as number,
        statusMessage: res.statusMessage as string,
        headers: res.headers,
        body
      }))
      res.on('error', reject)
    })
    ws.on('error', reject)
  })
}

export function denied (outcome: Outcome): Extract<Outcome, { accepted: false }> {
  if (outcome.accepted) {
    outcome.ws.terminate()
    throw new Error('expected a denial, got a 101')
  }
  return outcome
}

export function opened (outcome: Outcome): Extract<Outcome, { accepted: true }> {
  if (!outcome.accepted) throw new Error(`expected a 101, got ${outcome.statusCode}: ${outcome.body}`)
  return outcome
}

export const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
// RFC 6455 §1.3: the accept value for the sample key above.
export const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='

/** A valid upgrade request as raw text; `headers` replace or (with null) remove defaults. */
export function upgradeRequest (path: string, headers: Record<string, string | null> = {}, requestLine?: string): string {
  const all: Record<string, string | null> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': KEY,
    'Sec-WebSocket-Version': '13',
    ...headers
  }
  let text = `${requestLine ?? `GET ${path} HTTP/1.1`}\r\n`
  for (const [name, value] of Object.entries(all)) if (value !== null) text += `${name}: ${value}\r\n`
  return text + '\r\n'
}

export interface RawResult {
  text: string
  bytes: Buffer
  /** True when the server closed the connection (we saw its FIN or reset). */
  closed: boolean
}

/**
 * Sends raw bytes and collects everything the server sends until it closes the
 * connection, or until `waitMs` passes.
 */
export async function rawExchange (port: number, request: string | Buffer, waitMs = 2000): Promise<RawResult> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  return collect(socket, request, waitMs)
}

export function collect (socket: Socket, request: string | Buffer | null, waitMs: number): Promise<RawResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let closed = false
    const finish = (): void => {
      clearTimeout(timer)
      socket.destroy()
      const bytes = Buffer.concat(chunks)
      resolve({ text: bytes.toString('latin1'), bytes, closed })
    }
    const timer = setTimeout(finish, waitMs)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('end', () => { closed = true; finish() })
    socket.on('error', () => { closed = true; finish() })
    if (request !== null) socket.write(request)
  })
}

/** Splits a raw HTTP response into its status line, header lines and body. */
export function parseRaw (text: string): { statusLine: string, headerLines: string[], body: string } {
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) return { statusLine: text, headerLines: [], body: '' }
  const [statusLine, ...headerLines] = text.slice(0, end).split('\r\n')
  return { statusLine, headerLines, body: text.slice(end + 4) }
}

/** Header lines with the Date line's value replaced, so whole heads can be compared exactly. */
export function stableHead (headerLines: string[]): string[] {
  return headerLines.map((line) => /^date: /i.test(line) ? 'Date: <date>' : line)
}

export function wait (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` every 5 ms until it holds or `ms` pass; resolves to whether it held. */
export async function eventually (check: () => boolean, ms = 1000): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (check()) return true
    await wait(5)
  }
  return check()
}

export function logsAbove (logs: LogLine[], level: number): LogLine[] {
  return logs.filter((line) => line.level > level)
}

/**
 * Connects, sends a valid upgrade request for `path`, and resolves once the
 * server has sent something: the socket (flowing stopped) and that first chunk.
 */
export async function upgradeAndWait (port: number, path: string, allowHalfOpen = false): Promise<{ socket: Socket, first: Buffer }> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen })
  await once(socket, 'connect')
  socket.write(upgradeRequest(path))
  const [first] = await once(socket, 'data') as [Buffer]
  return { socket, first }
}
