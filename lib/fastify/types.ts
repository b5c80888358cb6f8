// Public types of the Fastify face, and the route options it adds to Fastify's
// own by declaration merging: `handshake` and `handshakeTimeout`.
import type { WebsocketPluginOptions } from '@fastify/websocket'
import type {
  ContextConfigDefault, FastifyBaseLogger, FastifyInstance, FastifyRequest, FastifySchema, FastifyTypeProvider,
  FastifyTypeProviderDefault, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerBase,
  RawServerDefault, RouteGenericInterface
} from 'fastify'
import type { HandshakeDecision } from '../core/decision.js'
import type { HandshakeContext } from '../core/handshake.js'
import type { AllowedOrigins } from '../core/origin.js'
import type { RejectVia } from '../core/refusal.js'
import type { InjectedHandshake, InjectHandshakeOptions } from '../testing/inject.js'
import type { OnStoreError } from '../limits/leases.js'
import type { LimitStore } from '../limits/store.js'

/** The plugin's `connectionLimits` option: where the counts live, and what a store failure does. */
export interface ConnectionLimitsOptions {
  /** Where the counts are kept: memoryLimitStore() (one process) or redisLimitStore() (a fleet). @default memoryLimitStore() */
  store?: LimitStore
  /** Milliseconds: a node that stops refreshing its leases (it crashed, or lost the store) loses them after this long. @default 15000 */
  leaseTtl?: number
  /** When the store cannot answer (within 1 s): 'deny' answers 503 with Retry-After; 'allow' admits, logs, and counts the connection once the store is back. @default 'deny' */
  onStoreError?: OnStoreError
  /** The Retry-After of a 429 over a limit, in seconds. @default 5 */
  retryAfter?: number
}

/** One connection limit of a route: at most `max` open WebSockets per key. */
export interface ConnectionLimit<Request = FastifyRequest> {
  /** The key this connection counts against (`user:${id}`), computed after `handshake` accepts; undefined skips this limit. */
  key: (request: Request) => string | undefined
  /** How many connections may hold the key at once: an integer, 0 or more. */
  max: number
  /**
   * false (the default): the key counts for this route only. true: every
   * route whose shared limit gives the same key counts it together (a user's
   * connections on all routes).
   * @default false
   */
  shared?: boolean
}

export interface FastifyWsGateOptions {
  /**
   * Milliseconds a handshake handler may take before the client is answered
   * 503 with Retry-After and the handler's signal aborts. 0 turns it off.
   * @default 10000
   */
  handshakeTimeout?: number
  /**
   * Upgrades that may be pending at once (in hooks, in the handshake handler,
   * being upgraded); past it, new upgrades are answered 503 with Retry-After
   * before any app code.
   * @default 10000
   */
  maxPendingHandshakes?: number
  /**
   * Origins that may open a WebSocket (cross-site WebSocket hijacking
   * protection): '*', a list such as ['https://app.example.com'], or a
   * predicate. Others get 403 before the handshake handler. Requests without
   * an Origin header (not from a browser) pass.
   * @default '*'
   */
  allowedOrigins?: AllowedOrigins
  /**
   * How reject() decisions reach the client. 'http': an HTTP response with
   * the status, headers and body. 'close-frame': a 101, then at once a close
   * frame with code 4000 + status and the reason, which browsers (which hide
   * a failed handshake's status) do show the page. 'auto': close-frame for
   * requests with an Origin header (browsers), HTTP for the rest.
   * @default 'http'
   */
  rejectVia?: RejectVia
  /** Bytes a denial body may have; a larger one is a 500, a stream is cut off. @default 65536 */
  denialMaxBodySize?: number
  /** Milliseconds a denial may take to go out (stream and flush); then the socket is destroyed. 0 for no limit. @default 10000 */
  denialTimeout?: number
  /**
   * WebSockets over HTTP/2 (RFC 8441) on an app created with `http2: true`:
   * the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL and answers
   * extended CONNECT requests on every WebSocket route. false: not
   * advertised, and browsers open WebSockets over HTTP/1.1 (which needs
   * `https.allowHTTP1`). See docs/http2.md.
   * @default true
   */
  http2?: boolean
  /** Connection limits shared by every node using the same store: see docs/limits.md. Routes take them with their `connectionLimit` option. */
  connectionLimits?: ConnectionLimitsOptions
  /** Options for @fastify/websocket, which fastify-ws-gate registers. */
  websocket?: WebsocketPluginOptions
}

/** What fastify-ws-gate counts, on `app.wsGate`. */
export interface WsGateStats {
  /** Upgrades counted against maxPendingHandshakes now. */
  readonly pending: number
  /** Upgrades answered 503 because maxPendingHandshakes was reached. */
  readonly shed: number
  /** Connection limit leases this node holds: its open connections that count against a limit. */
  readonly leases: number
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
    /** Overrides the plugin's allowedOrigins for this WebSocket route (fastify-ws-gate). */
    allowedOrigins?: AllowedOrigins
    /** Overrides the plugin's rejectVia for this route's handshake (fastify-ws-gate). */
    rejectVia?: RejectVia
    /** At most `max` open WebSockets per key, across every node sharing the store, taken after `handshake` accepts and before the 101 (fastify-ws-gate). */
    connectionLimit?: ConnectionLimit<FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>> | Array<ConnectionLimit<FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>>>
  }

  interface FastifyInstance<

    RawServer extends RawServerBase = RawServerDefault,
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    RawReply extends RawReplyDefaultExpression<RawServer> = RawReplyDefaultExpression<RawServer>,
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    Logger extends FastifyBaseLogger = FastifyBaseLogger,
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault
  > {
    /** fastify-ws-gate's counters. */
    wsGate: WsGateStats
    /**
     * Runs a WebSocket handshake without a network, through the same path as
     * a real upgrade (Node's parser, the gate's checks, hooks, validation,
     * `handshake`, the error handler), with a real `ws` client on an
     * in-memory connection (fastify-ws-gate).
     */
    injectHandshake (url: string, options?: InjectHandshakeOptions): Promise<InjectedHandshake>
  }
}
