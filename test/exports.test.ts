// The package's export shape: CommonJS require gives the plugin itself, with
// named exports as properties, like every Fastify plugin; internals stay private.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

function checkShape (t: tap.Test, gate: Record<string | symbol, unknown>) {
  t.type(gate, 'function')
  t.equal(gate.default, gate)
  t.equal(gate.fastifyWsGate, gate)
  t.type(gate.accept, 'function')
  t.type(gate.reject, 'function')
  t.equal(gate[Symbol.for('fastify.display-name')], 'fastify-ws-gate')
  t.strictSame(gate[Symbol.for('plugin-meta')], { fastify: '5.x', name: 'fastify-ws-gate' })
  t.strictSame(Object.keys(gate).sort(), ['HANDSHAKE_CHANNEL', 'accept', 'asgi', 'default', 'errors', 'fastifyWsGate', 'memoryLimitStore', 'redisLimitStore', 'reject'])
}

t.test('require() of the source returns the plugin with its named exports', async (t) => {
  checkShape(t, require('../lib/index.ts'))
})

t.test('the built package has the same shape through require() and import', async (t) => {
  const gate = require('fastify-ws-gate')
  checkShape(t, gate)
  // import() of a CommonJS module: the default export is module.exports, and
  // the named exports are the names Node's lexer finds in dist/index.js.
  const esm = await import('fastify-ws-gate')
  t.strictSame(Object.keys(esm).sort(), ['HANDSHAKE_CHANNEL', 'accept', 'asgi', 'default', 'errors', 'fastifyWsGate', 'memoryLimitStore', 'redisLimitStore', 'reject'])
  t.equal(esm.default, gate)
  for (const name of ['HANDSHAKE_CHANNEL', 'accept', 'asgi', 'errors', 'fastifyWsGate', 'memoryLimitStore', 'redisLimitStore', 'reject'] as const) {
    t.equal(esm[name], gate[name], `import { ${name} } is require().${name}`)
  }
})

t.test('every error code is exported, prefixed and documented', async (t) => {
  const { errors } = require('../lib/index.ts')
  const api = readFileSync(join(__dirname, '..', 'docs', 'api.md'), 'utf8')
  const codes = Object.keys(errors)
  t.strictSame(codes.sort(), [
    'FST_WS_GATE_ASGI_CLIENT_DISCONNECTED', 'FST_WS_GATE_ASGI_INCOMPLETE_RESPONSE', 'FST_WS_GATE_ASGI_INVALID_MESSAGE',
    'FST_WS_GATE_ASGI_NO_DECISION', 'FST_WS_GATE_ASGI_UNEXPECTED_MESSAGE', 'FST_WS_GATE_BAD_REQUEST',
    'FST_WS_GATE_BODY_STREAM_ERROR', 'FST_WS_GATE_CLIENT_CLOSED', 'FST_WS_GATE_CONNECTION_LIMIT', 'FST_WS_GATE_FORBIDDEN_HEADER',
    'FST_WS_GATE_HANDSHAKE_TIMEOUT', 'FST_WS_GATE_HTTP2_NOT_SUPPORTED', 'FST_WS_GATE_INVALID_BODY', 'FST_WS_GATE_INVALID_DECISION',
    'FST_WS_GATE_INVALID_HEADER', 'FST_WS_GATE_INVALID_OPTION', 'FST_WS_GATE_INVALID_REPLY',
    'FST_WS_GATE_INVALID_ROUTE_OPTION', 'FST_WS_GATE_INVALID_STATUS', 'FST_WS_GATE_LIMIT_STORE_CLOSED', 'FST_WS_GATE_LIMIT_STORE_UNAVAILABLE', 'FST_WS_GATE_METHOD_NOT_ALLOWED',
    'FST_WS_GATE_NON_ERROR_THROWN', 'FST_WS_GATE_NOT_WEBSOCKET_ROUTE', 'FST_WS_GATE_ORIGIN_NOT_ALLOWED',
    'FST_WS_GATE_OVERLOADED', 'FST_WS_GATE_PROTOCOL_NOT_OFFERED', 'FST_WS_GATE_REGISTERED_AFTER_ROUTES',
    'FST_WS_GATE_REGISTRATION', 'FST_WS_GATE_SHUTTING_DOWN', 'FST_WS_GATE_UNGATED_ROUTE', 'FST_WS_GATE_UNSUPPORTED_VERSION'
  ])
  for (const code of codes) {
    t.match(code, /^FST_WS_GATE_[A-Z0-9_]+$/)
    t.equal(new errors[code]('a', 'b', 'c').code, code)
    t.ok(api.includes(`\`${code}\``), `${code} is in docs/api.md`)
  }
})

t.test('decisions are plain values made only by accept() and reject()', async (t) => {
  const { accept, reject } = require('../lib/index.ts')
  const brand = Symbol.for('fastify-ws-gate.decision')
  t.strictSame(reject(), { [brand]: 'reject', status: 403, reason: undefined, headers: undefined, body: undefined })
  t.strictSame(reject(401, 'r', { headers: { a: '1' }, body: 'b' }), { [brand]: 'reject', status: 401, reason: 'r', headers: { a: '1' }, body: 'b' })
  t.strictSame(accept({ protocol: 'p' }), { [brand]: 'accept', protocol: 'p', headers: undefined })
  t.strictSame(accept(), { [brand]: 'accept', protocol: undefined, headers: undefined })
})
