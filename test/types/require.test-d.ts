// Type tests for CommonJS's own syntax, checked by `npm run typecheck`:
// `import x = require()` gives the plugin, with the named exports and the
// public types on it. (test/package.test.ts checks the same on the tarball.)
import Fastify = require('fastify')
import gate = require('../../lib/index.js')

const app = Fastify()
app.register(gate, { handshakeTimeout: 1000 })
app.register(gate.fastifyWsGate, { rejectVia: 'auto' })
app.register(gate.default)
// @ts-expect-error handshakeTimeout is a number
app.register(gate, { handshakeTimeout: '1s' })
// @ts-expect-error internals are not exported
console.log(gate.isDecision)

const decision: gate.HandshakeDecision = gate.reject(401, 'Invalid token')
const handler: gate.HandshakeHandler = (_request, { protocols }) => gate.accept({ protocol: protocols[0] })
const route: gate.AsgiRouteOptions = gate.asgi(async (_scope, receive) => { await receive() })
export = { decision, handler, route }
