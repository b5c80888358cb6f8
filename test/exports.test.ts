// The package's export shape: CommonJS require gives the plugin itself, with
// named exports as properties, like every Fastify plugin; internals stay private.
import { createRequire } from 'node:module'
import t from 'tap'

const require = createRequire(__filename)

t.test('require() returns the plugin with its named exports', async (t) => {
  const gate = require('../lib/index.ts')
  t.type(gate, 'function')
  t.equal(gate.default, gate)
  t.equal(gate.fastifyWsGate, gate)
  t.type(gate.accept, 'function')
  t.type(gate.reject, 'function')
  t.equal(gate[Symbol.for('fastify.display-name')], 'fastify-ws-gate')
  t.strictSame(gate[Symbol.for('plugin-meta')], { fastify: '5.x', name: 'fastify-ws-gate' })
  t.strictSame(Object.keys(gate).sort(), ['accept', 'default', 'errors', 'fastifyWsGate', 'reject'])
})

t.test('every error code is exported, prefixed and documented', async (t) => {
  const { errors } = require('../lib/index.ts')
  const { readFileSync } = require('node:fs') as typeof import('node:fs')
  const api = readFileSync(require.resolve('../docs/api.md'), 'utf8')
  const codes = Object.keys(errors)
  t.ok(codes.length >= 10)
  for (const code of codes) {
    t.match(code, /^FST_WS_GATE_[A-Z_]+$/)
    t.equal(new errors[code]('a', 'b', 'c').code, code)
    t.ok(api.includes(`\`${code}\``), `${code} is in docs/api.md`)
  }
})

t.test('decisions are plain values made only by accept() and reject()', async (t) => {
  const { accept, reject } = require('../lib/index.ts')
  t.strictSame({ ...reject() }, { status: 403, reason: undefined, headers: undefined, body: undefined })
  t.strictSame({ ...accept({ protocol: 'p' }) }, { protocol: 'p', headers: undefined })
  t.equal(Object.getOwnPropertySymbols(accept()).length, 1)
})
