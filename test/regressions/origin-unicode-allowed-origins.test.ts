// Regression (issue 17, item 8): allowedOrigins given in Unicode
// ('https://bücher.example') never matched the origin a browser sends
// ('https://xn--bcher-kva.example'), nor did one written with its default port
// ('https://a.example:443'): the list was compared as written. The configured
// origins are now put, at registration, in the form a browser sends (the
// WHATWG URL parser's serialisation: lower-case, punycode, no default port),
// and what cannot be an origin is refused with the option's coded error.
//
// The requests are browser-shaped: a raw client sends the Origin header as a
// browser serialises it. The header itself is only lower-cased, never parsed:
// a form no browser sends ('https://a.example:443', raw UTF-8) is refused.
import { once } from 'node:events'
import { connect } from 'node:net'
import Fastify from 'fastify'
import t from 'tap'
import fastifyWsGate, { accept } from '../../lib/index.js'
import { parseRaw, rawExchange, start, upgradeRequest } from '../helpers.js'

const USAGE = 'must be \'*\', a list of origins such as \'https://app.example.com\' (scheme://host[:port], no path), or a function (origin) => boolean'

// The status line the server answers an upgrade from `origin` with (the 101
// leaves the connection open: its first chunk is enough).
async function statusFor (port: number, path: string, origin: string): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(Buffer.from(upgradeRequest(path, { Origin: origin }), 'latin1'))
  const [chunk] = await once(socket, 'data') as [Buffer]
  socket.destroy()
  return parseRaw(chunk.toString('latin1')).statusLine
}

const SWITCHING = 'HTTP/1.1 101 Switching Protocols'
const FORBIDDEN = 'HTTP/1.1 403 Forbidden'

t.test('a Unicode or default-port allowedOrigins entry matches the origin a browser sends', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: () => accept() }, () => {})
  }, { allowedOrigins: ['https://bücher.example', 'https://a.example:443'] })
  const cases: Array<[string, string]> = [
    ['https://xn--bcher-kva.example', SWITCHING],
    ['https://XN--BCHER-KVA.example', SWITCHING],
    ['https://a.example', SWITCHING],
    // No browser sends these forms; the header is not parsed, so they are refused.
    ['https://a.example:443', FORBIDDEN],
    ['https://a.example/', FORBIDDEN],
    ['https://b\u00c3\u00bccher.example', FORBIDDEN] // 'bücher' as raw UTF-8 bytes, read as Latin-1
  ]
  for (const [origin, status] of cases) t.equal(await statusFor(port, '/ws', origin), status, origin)
  const refused = await rawExchange(port, upgradeRequest('/ws', { Origin: 'https://a.example:443' }))
  t.equal(parseRaw(refused.text).body, JSON.stringify({
    statusCode: 403, code: 'FST_WS_GATE_ORIGIN_NOT_ALLOWED', error: 'Forbidden', message: 'Origin "https://a.example:443" is not allowed'
  }))
  t.equal(refused.closed, true)
})

t.test('route options are normalised the same way; IPv6 and app-shell origins', async (t) => {
  const { port } = await start(t, (app) => {
    app.get('/route', { websocket: true, allowedOrigins: ['HTTPS://Bücher.Example:443/', 'http://[0:0::1]:80'], handshake: () => accept() }, () => {})
    app.get('/shell', { websocket: true, allowedOrigins: ['Capacitor://LocalHost', 'chrome-extension://abcdef/'], handshake: () => accept() }, () => {})
  })
  const cases: Array<[string, string, string]> = [
    ['/route', 'https://xn--bcher-kva.example', SWITCHING],
    ['/route', 'http://[::1]', SWITCHING],
    ['/route', 'https://a.example', FORBIDDEN],
    ['/shell', 'capacitor://localhost', SWITCHING],
    ['/shell', 'chrome-extension://abcdef', SWITCHING],
    ['/shell', 'capacitor://localhost:80', FORBIDDEN]
  ]
  for (const [path, origin, status] of cases) t.equal(await statusFor(port, path, origin), status, `${path} ${origin}`)
})

// Each entry that cannot be an origin, and why (the message after the usage).
const refusals: Array<[unknown, string]> = [
  [42, 'the list holds a number, not a string'],
  [null, 'the list holds null, not a string'],
  ['null', '"null" is not scheme://host[:port]'],
  ['https:a.example', '"https:a.example" is not scheme://host[:port]'],
  [' https://a.example', '" https://a.example" is not scheme://host[:port]'],
  ['https://a.exa\tmple', '"https://a.exa\\tmple" is not scheme://host[:port]'],
  ['https://[::1', '"https://[::1" is not a URL the WHATWG parser accepts'],
  ['https://user@a.example', '"https://user@a.example" has credentials'],
  ['https://:secret@a.example', '"https://:secret@a.example" has credentials'],
  ['https://a.example/app', '"https://a.example/app" has a path'],
  ['chrome-extension://abc/app', '"chrome-extension://abc/app" has a path'],
  ['https://a.example?', '"https://a.example?" has a query or a fragment'],
  ['https://a.example#top', '"https://a.example#top" has a query or a fragment'],
  ['file://host', '"file://host" is a file: URL, whose origin browsers send as \'null\' (allow it with a function)'],
  ['app:///', '"app:///" has no host'],
  ['app://bücher', '"app://bücher" has a scheme the URL parser cannot normalise, so it must be given in ASCII, as the browser sends it']
]

t.test('an entry that cannot be normalised to an origin is refused at registration: FST_WS_GATE_INVALID_OPTION', async (t) => {
  for (const [entry, why] of refusals) {
    const app = Fastify()
    const err = await app.register(fastifyWsGate, { allowedOrigins: ['https://ok.example', entry] as never }).ready().then(() => null, (err: Error) => err)
    t.equal((err as { code?: string } | null)?.code, 'FST_WS_GATE_INVALID_OPTION', JSON.stringify(entry))
    t.equal(err?.message, `Invalid fastify-ws-gate option allowedOrigins: ${USAGE}; ${why}`)
    await app.close()
  }
})

t.test('the same entries as a route option: FST_WS_GATE_INVALID_ROUTE_OPTION', async (t) => {
  const app = Fastify()
  await app.register(fastifyWsGate)
  t.teardown(() => app.close())
  for (const [entry, why] of refusals) {
    let err: Error & { code?: string } = new Error('not thrown')
    try {
      app.get('/ws', { websocket: true, allowedOrigins: [entry] as never }, () => {})
    } catch (thrown) {
      err = thrown as Error
    }
    t.equal(err.code, 'FST_WS_GATE_INVALID_ROUTE_OPTION', JSON.stringify(entry))
    t.equal(err.message, `Invalid option allowedOrigins on route GET /ws: ${USAGE}; ${why}`)
  }
})
