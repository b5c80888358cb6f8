// The package entry: the Fastify plugin, the decision constructors and the
// public types; internals stay out.
//
// Written with `export =`, so that the declaration tsc emits says what
// require() returns: the plugin itself, with the named exports as its
// properties, like every Fastify plugin (@fastify/websocket's types/index.d.ts
// has the same shape). An `export default` declaration in this CommonJS
// package made the default import, to TypeScript under node16/nodenext, the
// module object rather than the plugin.
import { fastifyWsGate as plugin } from './fastify/plugin.js'
import * as errors from './errors.js'
import { accept, reject } from './core/decision.js'
import { asgi } from './asgi/fastify.js'
import { HANDSHAKE_CHANNEL } from './core/diagnostics.js'
import { memoryLimitStore } from './limits/memory.js'
import { redisLimitStore } from './limits/redis.js'
import type {
  ContextConfigDefault, FastifyBaseLogger, FastifySchema, FastifyTypeProvider, FastifyTypeProviderDefault,
  RawRequestDefaultExpression, RawServerBase, RawServerDefault, RouteGenericInterface
} from 'fastify'
import type * as asgiRoute from './asgi/fastify.js'
import type * as asgiTypes from './asgi/types.js'
import type * as decision from './core/decision.js'
import type * as handshake from './core/handshake.js'
import type * as http from './core/headers.js'
import type * as inject from './testing/inject.js'
import type * as observe from './core/diagnostics.js'
import type * as refusal from './core/refusal.js'
import type * as types from './fastify/types.js'
import type * as store from './limits/store.js'
import type * as memory from './limits/memory.js'
import type * as redis from './limits/redis.js'

const named = { fastifyWsGate: plugin, default: plugin, accept, reject, asgi, HANDSHAKE_CHANNEL, errors, memoryLimitStore, redisLimitStore } as const
const fastifyWsGate: typeof plugin & typeof named = Object.assign(plugin, named)

// The public types, as named imports (`import { type AcceptDecision } from
// 'fastify-ws-gate'`) and as `fastifyWsGate.AcceptDecision`. A namespace of
// types only (no value, so nothing is emitted) merges with the constant above.
// eslint-disable-next-line @typescript-eslint/no-redeclare
namespace fastifyWsGate {
  export type AsgiOptions = asgiRoute.AsgiOptions
  export type AsgiRouteOptions = asgiRoute.AsgiRouteOptions
  export type Bytes = asgiTypes.Bytes
  export type AsgiHeaders = asgiTypes.AsgiHeaders
  export type WebSocketScope = asgiTypes.WebSocketScope
  export type WebSocketConnectEvent = asgiTypes.WebSocketConnectEvent
  export type WebSocketReceiveEvent = asgiTypes.WebSocketReceiveEvent
  export type WebSocketDisconnectEvent = asgiTypes.WebSocketDisconnectEvent
  export type AsgiReceiveMessage = asgiTypes.AsgiReceiveMessage
  export type WebSocketAcceptEvent = asgiTypes.WebSocketAcceptEvent
  export type WebSocketCloseEvent = asgiTypes.WebSocketCloseEvent
  export type WebSocketSendEvent = asgiTypes.WebSocketSendEvent
  export type WebSocketResponseStartEvent = asgiTypes.WebSocketResponseStartEvent
  export type WebSocketResponseBodyEvent = asgiTypes.WebSocketResponseBodyEvent
  export type AsgiSendMessage = asgiTypes.AsgiSendMessage
  export type AsgiReceive = asgiTypes.AsgiReceive
  export type AsgiSend = asgiTypes.AsgiSend
  export type AsgiApp = asgiTypes.AsgiApp
  export type AcceptDecision = decision.AcceptDecision
  export type AcceptOptions = decision.AcceptOptions
  export type DenialBody = decision.DenialBody
  export type HandshakeDecision = decision.HandshakeDecision
  export type RejectDecision = decision.RejectDecision
  export type RejectOptions = decision.RejectOptions
  export type HandshakeContext = handshake.HandshakeContext
  export type HeadersInput = http.HeadersInput
  export type RejectVia = refusal.RejectVia
  export type InjectedAccept = inject.InjectedAccept
  export type InjectedDenial = inject.InjectedDenial
  export type InjectedHandshake = inject.InjectedHandshake
  export type InjectHandshakeOptions = inject.InjectHandshakeOptions
  export type FastifyWsGateOptions = types.FastifyWsGateOptions
  export type WsGateStats = types.WsGateStats
  export type ConnectionLimitsOptions = types.ConnectionLimitsOptions
  export type ConnectionLimit<Request = import('fastify').FastifyRequest> = types.ConnectionLimit<Request>
  export type LimitStore = store.LimitStore
  export type LimitRequest = store.LimitRequest
  export type AcquireResult = store.AcquireResult
  export type MemoryLimitStoreOptions = memory.MemoryLimitStoreOptions
  export type RedisLimitStoreOptions = redis.RedisLimitStoreOptions
  export type HandshakeEvent = observe.HandshakeEvent
  export type HandshakeHandler<
    RawServer extends RawServerBase = RawServerDefault,
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
    ContextConfig = ContextConfigDefault,
    SchemaCompiler extends FastifySchema = FastifySchema,
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
    Logger extends FastifyBaseLogger = FastifyBaseLogger
  > = types.HandshakeHandler<RawServer, RawRequest, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>
}

// Node gives an ES module that imports this one its named exports by reading
// this file's source (cjs-module-lexer), not by running it; this line is what
// it reads. tsc puts `module.exports = fastifyWsGate` last, so it sets nothing
// anyone can see.
exports.fastifyWsGate = exports.accept = exports.reject = exports.asgi = exports.HANDSHAKE_CHANNEL = exports.errors = exports.memoryLimitStore = exports.redisLimitStore = undefined

export = fastifyWsGate
