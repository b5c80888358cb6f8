// Public types of the Fastify face, and the route options it adds to Fastify's
// own by declaration merging: `handshake` and `handshakeTimeout`.
import type { WebsocketPluginOptions } from '@fastify/websocket'
import type {
  ContextConfigDefault, FastifyBaseLogger, FastifyInstance, FastifyRequest, FastifySchema, FastifyTypeProvider,
  FastifyTypeProviderDefault, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerBase,
  RawServerDefault, RouteGenericInterface
} from 'fastify'
import type { HandshakeDecision } from '../engine/decision.js'
import type { HandshakeContext } from '../engine/handshake.js'

export interface FastifyWsGateOptions {
  /**
   * Milliseconds a handshake handler may take before the client is answered
   * 503 with Retry-After and the handler's signal aborts. 0 turns it off.
   * @default 10000
   */
  handshakeTimeout?: number
  /** Options for @fastify/websocket, which fastify-ws-gate registers. */
  websocket?: WebsocketPluginOptions
}

/** Decides a WebSocket handshake: returns accept() or reject(), or a promise of one. */
export type HandshakeHandler<
  RawServer extends RawServerBase = RawServerDefault,
  RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
  RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
  ContextConfig = ContextConfigDefault,
  SchemaCompiler extends FastifySchema = FastifySchema,
  TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
  Logger extends FastifyBaseLogger = FastifyBaseLogger
> = (
  this: FastifyInstance,
  request: FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>,
  context: HandshakeContext
) => HandshakeDecision | PromiseLike<HandshakeDecision>

declare module 'fastify' {
  interface RouteShorthandOptions<
    RawServer extends RawServerBase = RawServerDefault,
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    RawReply extends RawReplyDefaultExpression<RawServer> = RawReplyDefaultExpression<RawServer>,
    RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
    ContextConfig = ContextConfigDefault,
    SchemaCompiler extends FastifySchema = FastifySchema,
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
    Logger extends FastifyBaseLogger = FastifyBaseLogger
  > {
    /** Decides the WebSocket handshake of a `websocket: true` route (fastify-ws-gate). */
    handshake?: HandshakeHandler<RawServer, RawRequest, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger>
    /** Overrides the plugin's handshakeTimeout for this route, in milliseconds (fastify-ws-gate). */
    handshakeTimeout?: number
  }
}
