// The package entry: the Fastify plugin (default export, as with every Fastify
// plugin), the decision constructors and the public types. Internals stay out.
import { fastifyWsGate } from './fastify/plugin.js'
import * as errors from './errors.js'

export { accept, reject } from './engine/decision.js'
export { asgi } from './asgi/route.js'
export type { AsgiOptions, AsgiRouteOptions } from './asgi/route.js'
export type * from './asgi/types.js'
export type {
  AcceptDecision, AcceptOptions, DenialBody, HandshakeDecision, RejectDecision, RejectOptions
} from './engine/decision.js'
export type { HandshakeContext } from './engine/handshake.js'
export type { HeadersInput } from './engine/http.js'
export type { RejectVia } from './engine/refusal.js'
export type { InjectedAccept, InjectedDenial, InjectedHandshake, InjectHandshakeOptions } from './engine/inject.js'
export type { FastifyWsGateOptions, HandshakeHandler, WsGateStats } from './fastify/types.js'
export { HANDSHAKE_CHANNEL } from './fastify/observe.js'
export type { HandshakeEvent } from './fastify/observe.js'
export { errors, fastifyWsGate }
export default fastifyWsGate

// CommonJS: `require('fastify-ws-gate')` is the plugin itself, with the named
// exports as its properties, like every Fastify plugin.
module.exports = Object.assign(fastifyWsGate, exports)
