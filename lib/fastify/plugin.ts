// The Fastify face: registration and options, the routes, the relay with
// @fastify/websocket, shutdown, and the replies Fastify sends to upgrades.
//
// How a request travels (docs/architecture.md walks it in full): the gate
// owns the 'upgrade' listener of the server that receives upgrades
// (Fastify's own, or ws's `server` option) and runs the HTTP/1.1 checks
// there, before any application code. An upgrade that passes gets an
// Http1Upgrade, which owns its socket from then on, and goes on to
// @fastify/websocket, which listens to a relay instead of a server and
// routes it through Fastify, so hooks and schema validation run as for any
// request. Every route's handler is wrapped: a WebSocket route's wrapper
// runs its `handshake` (the core Handshake, with an Upgrade as its owner)
// or admits the upgrade; a plain route's answers 400 instead of letting
// @fastify/websocket send a 101 and hang up. ws is handed an upgrade only
// through the gate's own handleUpgrade(), which refuses any the gate did not
// admit.
//
// Over HTTP/2 (RFC 8441) a WebSocket handshake is an extended CONNECT, which
// Node's compatibility layer emits as 'connect'(req, res). The gate listens
// for it, runs the HTTP/2 checks, and routes the request through Fastify
// itself, as a GET to the same route, with an Http2Upgrade owning the
// stream; an accepted handshake's stream goes to ws through the same
// hand-over, and the route's WebSocket handler runs as @fastify/websocket
// would run it.
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2SecureServer, Http2Server, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2'
import type { Duplex } from 'node:stream'
import fastifyWebsocket from '@fastify/websocket'
import type {
  FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, RouteHandlerMethod, RouteOptions
} from 'fastify'
import fp from 'fastify-plugin'
import type { WebSocket, WebSocketServer } from 'ws'
import {
  FST_WS_GATE_BAD_REQUEST, FST_WS_GATE_HTTP2_NOT_SUPPORTED, FST_WS_GATE_INVALID_OPTION, FST_WS_GATE_INVALID_REPLY,
  FST_WS_GATE_INVALID_ROUTE_OPTION, FST_WS_GATE_METHOD_NOT_ALLOWED, FST_WS_GATE_NOT_WEBSOCKET_ROUTE,
  FST_WS_GATE_ORIGIN_NOT_ALLOWED, FST_WS_GATE_OVERLOADED, FST_WS_GATE_REGISTERED_AFTER_ROUTES, FST_WS_GATE_REGISTRATION,
  FST_WS_GATE_SHUTTING_DOWN, FST_WS_GATE_UNGATED_ROUTE
} from '../errors.js'
import { errorDenial } from '../core/denial.js'
import { publish, publishEarly, type HandshakeEvent } from '../core/diagnostics.js'
import { Handshake, HandshakeRegistry, type HandshakeSettings } from '../core/handshake.js'
import { errorBody, isStatusMessage, JSON_TYPE, RETRY_LATER, type HeaderPairs, type RequestProblem } from '../core/headers.js'
import { checkTimeout, originsOption, settings } from '../core/options.js'
import type { OriginCheck } from '../core/origin.js'
import { checkRejectVia, closesWithFrame } from '../core/refusal.js'
import { asksUpgrade, checkUpgrade, isWebSocketUpgrade } from '../http1/checks.js'
import { writeDenial } from '../http1/response.js'
import { Http1Upgrade } from '../http1/upgrade.js'
import { checkConnect } from '../http2/checks.js'
import { writeDenial as writeStreamDenial } from '../http2/response.js'
import { Http2Upgrade } from '../http2/upgrade.js'
import { HandOver } from '../ws/handover.js'
import { injectUpgrade, type InjectHandshakeOptions } from '../testing/inject.js'
import { kDrivesEngine } from './driver.js'
import { checkRules, Leases, type Rules } from './limits.js'
import type { FastifyWsGateOptions, HandshakeHandler } from './types.js'
import { Upgrade, type Gate } from './upgrade.js'

// Set by our 'upgrade' listener on the request of an upgrade that passed the
// checks: its presence marks a WebSocket upgrade. On the request, not the
// socket: @fastify/websocket's injectWS() makes requests without one.
const kUpgrade = Symbol('fastify-ws-gate.upgrade')
// In the config of every route the gate has seen (its onRoute hook ran).
const kGated = Symbol('fastify-ws-gate.gated')
// Set on the server once the gate is installed on it.
const kInstalled = Symbol('fastify-ws-gate.installed')
// On a WebSocket route's options, before @fastify/websocket replaces its
// handler: the route's WebSocket handler, which the gate runs itself for a
// handshake over HTTP/2.
const kWsHandler = Symbol('fastify-ws-gate.wsHandler')
// On an HTTP/2 session: its handshakes counted against maxPendingHandshakes
// now. One connection can open streams for next to nothing (Node allows 2^32
// concurrent streams by default), where over HTTP/1.1 each pending handshake
// costs a TCP connection; past MAX_PENDING_PER_SESSION, a session's new
// handshakes are shed, so that one client cannot take every pending place.
const kSessionPending = Symbol('fastify-ws-gate.sessionPending')
const MAX_PENDING_PER_SESSION = 128
// How long app.close() waits for a client to answer close code 1001.
const CLOSE_GRACE = 2000

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void
type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void
type WebSocketHandler = (this: FastifyInstance, socket: WebSocket, request: FastifyRequest) => unknown
type ErrorHandler = (this: FastifyInstance, error: Error, socket: WebSocket, request: FastifyRequest, reply: FastifyReply) => void

interface PendingSession extends ServerHttp2Session {
  [kSessionPending]?: number
}

interface GateRequest extends IncomingMessage {
  [kUpgrade]?: Upgrade | undefined
}

const upgradeOf = (req: IncomingMessage): Upgrade | undefined => (req as GateRequest)[kUpgrade]

// Fastify's own request logging (5.10 and later): its LogController decides
// whether request lines are written (disableRequestLogging, isLogDisabled),
// and writes "request completed". Older 5.x have the option alone.
interface LogController {
  requestCompleted (err: null, request: FastifyRequest, reply: FastifyReply): void
}

/**
 * What @fastify/websocket listens to instead of a server. The gate hands it
 * the upgrades that passed its checks (forward()); an 'upgrade' emitted on it
 * from outside (@fastify/websocket's injectWS()) enters the gate like one on
 * the server. Nothing else is ever emitted on it (it has no 'newListener'
 * listener), so every emit() is an upgrade.
 */
class Relay extends EventEmitter {
  readonly #enter: UpgradeListener
  constructor (enter: UpgradeListener) {
    super()
    this.#enter = enter
  }

  override emit (_event: string | symbol, ...args: unknown[]): boolean {
    this.#enter(...(args as Parameters<UpgradeListener>))
    return true
  }

  forward (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    super.emit('upgrade', req, socket, head)
  }
}

const plugin: FastifyPluginAsync<FastifyWsGateOptions> = async function fastifyWsGate (fastify, options) {
  const { handshakeTimeout, maxPendingHandshakes, limits, origins, rejectVia } = settings(options)
  const { websocket, http2: http2Option, connectionLimits } = options
  if (connectionLimits !== undefined && (typeof connectionLimits !== 'object' || connectionLimits === null)) {
    throw new FST_WS_GATE_INVALID_OPTION('connectionLimits', 'must be an object')
  }
  if (http2Option !== undefined && typeof http2Option !== 'boolean') {
    throw new FST_WS_GATE_INVALID_OPTION('http2', 'must be a boolean')
  }
  if (websocket !== undefined && (typeof websocket !== 'object' || websocket === null)) {
    throw new FST_WS_GATE_INVALID_OPTION('websocket', 'must be the options object of @fastify/websocket')
  }
  if (websocket?.options?.noServer === true) {
    // ws would then upgrade nothing by itself, and the app would have to
    // call handleUpgrade() past the gate.
    throw new FST_WS_GATE_INVALID_OPTION('websocket', 'options.noServer is not supported: upgrades reach ws through the gate (use options.server for another server)')
  }
  // Handshakes whose handler is running: shutdown answers them.
  const registry = new HandshakeRegistry()
  // Upgrades between the checks and their outcome (in hooks, in the handler,
  // or being upgraded): what maxPendingHandshakes bounds. Each leaves the
  // count once, in finish().
  let inflight = 0
  let shed = 0
  // The gate owns the server's upgrade path, which is server-wide; from a
  // child context its hooks would cover only some of the routes it receives.
  const server = fastify.server as typeof fastify.server & { [kInstalled]?: true, requireHostHeader?: boolean }
  if (!Object.prototype.hasOwnProperty.call(fastify, 'server')) {
    throw new FST_WS_GATE_REGISTRATION('it was registered in a child context (routes in every context are gated from the root)')
  }
  if (server[kInstalled] === true) throw new FST_WS_GATE_REGISTRATION('it is already registered on this server')
  // WebSockets over HTTP/2, on by default on an HTTP/2 server whose upgrades
  // the gate receives (not with ws's `server` option, below).
  let http2 = fastify.initialConfig.http2 === true && http2Option !== false
  if (http2 && fastify.hasDecorator('websocketServer')) throw new FST_WS_GATE_HTTP2_NOT_SUPPORTED()
  server[kInstalled] = true
  // This node's leases: made once the registration checks have passed when
  // the option is given, else with the first route that has limits (the
  // in-process store).
  let leases = connectionLimits === undefined ? undefined : new Leases(connectionLimits, fastify.log)
  const requireHost = server.requireHostHeader !== false
  // Routes declared before the gate never had their options read: their
  // upgrades are refused (the onRequest hook below). Fastify cannot tell us
  // which of them are WebSocket routes, so this is a warning, not an error.
  const earlier = fastify.printRoutes({ commonPrefix: false })
  if (earlier !== '(empty tree)') {
    const err = new FST_WS_GATE_REGISTERED_AFTER_ROUTES(earlier)
    fastify.log.warn({ code: err.code }, err.message)
  }
  fastify.decorate('wsGate', {
    get pending () { return inflight },
    get shed () { return shed },
    get leases () { return leases?.keeper.size ?? 0 }
  })
  fastify.decorate('injectHandshake', async function injectHandshake (this: FastifyInstance, url: string, options?: InjectHandshakeOptions) {
    await this.ready()
    return injectUpgrade(entry, url, options)
  })

  // Shutdown begins when close() is called: pending handshakes get 503 with
  // Retry-After (their signals abort), and so does any upgrade that arrives
  // from now on. Not in a preClose hook: Fastify stops routing before those
  // run (it would answer an upgrade with a bare 503 of its own, on a socket
  // nobody then closes), and preClose hooks registered before the gate's
  // (@fastify/websocket's, when the app registered it first) can take seconds.
  let closing = false
  const close = fastify.close
  fastify.close = function (this: FastifyInstance, ...args: unknown[]) {
    if (!closing) {
      closing = true
      registry.shutdown()
    }
    return (close as (...args: unknown[]) => unknown).apply(this, args)
  } as typeof fastify.close

  // @fastify/websocket listens to the relay instead of a server, so that
  // nothing reaches Fastify's routing before the checks.
  const relay = new Relay(onUpgrade)
  // The server whose upgrades the gate receives.
  let entry: EventEmitter = server
  if (fastify.hasDecorator('websocketServer')) {
    if (websocket !== undefined) {
      throw new FST_WS_GATE_INVALID_OPTION('websocket', '@fastify/websocket is already registered; configure it there')
    }
    const listeners = server.rawListeners('upgrade') as UpgradeListener[]
    // @fastify/websocket listens on another server (its `server` option):
    // those upgrades would reach routes without passing the gate.
    if (listeners.length === 0) {
      throw new FST_WS_GATE_REGISTRATION('@fastify/websocket was registered with options.server; register it through fastify-ws-gate\'s `websocket` option instead, so that the gate receives that server\'s upgrades')
    }
    for (const listener of listeners) {
      server.removeListener('upgrade', listener)
      relay.on('upgrade', listener)
    }
  } else {
    const { server: external, ...wsOptions } = websocket?.options ?? {}
    if (external !== undefined && external !== null) {
      entry = external as EventEmitter
      http2 = false
    }
    // Before @fastify/websocket's own onRoute hook, which replaces the
    // handler of a WebSocket route with its wrapper.
    if (http2) {
      fastify.addHook('onRoute', (route) => {
        const handler = route.websocket === true ? route.handler : route.wsHandler
        if (typeof handler === 'function') (route as unknown as Record<symbol, unknown>)[kWsHandler] = handler
      })
    }
    await fastify.register(fastifyWebsocket, {
      preClose: closeConnections,
      ...websocket,
      options: { ...wsOptions, server: relay as never }
    })
    // Registered again (alphabetical autoloading puts fastify-ws-gate
    // first), @fastify/websocket would fail deep inside with
    // FST_ERR_DEC_ALREADY_PRESENT on its 'ws' request decorator.
    const decorateRequest = fastify.decorateRequest
    fastify.decorateRequest = function (this: FastifyInstance, name: string, ...rest: unknown[]) {
      if (name === 'ws') {
        throw new FST_WS_GATE_REGISTRATION('@fastify/websocket was registered after it, and fastify-ws-gate registers @fastify/websocket itself: remove that registration (pass its options as fastify-ws-gate\'s `websocket` option), or register @fastify/websocket before fastify-ws-gate')
      }
      return (decorateRequest as (...args: unknown[]) => FastifyInstance).call(this, name, ...rest)
    } as typeof fastify.decorateRequest
  }

  // Accepted connections get close code 1001 (unless the app gave its own
  // preClose to @fastify/websocket), and close resolves once they are gone.
  async function closeConnections (this: FastifyInstance): Promise<void> {
    const wss = this.websocketServer
    // First, so that ws completes no upgrade from now on; it reports once
    // every client is gone.
    const closed = new Promise((resolve) => wss.close(resolve))
    // Without clientTracking ws keeps no list; there is nothing to close here then.
    // A client that does not answer the close frame is cut off after a grace
    // period (ws alone would wait 30 s, longer than Fastify waits for preClose).
    for (const client of wss.clients ?? []) {
      const timer = setTimeout(() => client.terminate(), CLOSE_GRACE)
      client.once('close', () => clearTimeout(timer))
      client.close(1001, 'Server shutting down')
    }
    await closed
  }

  // @fastify/websocket's injectWS() builds a request object without a Host
  // header (which the checks require); it gets the one Fastify's inject() uses.
  const injectWS = fastify.injectWS
  fastify.injectWS = function (this: FastifyInstance, path?: string, context: { headers?: Record<string, unknown> } = {}, ...rest: unknown[]) {
    return (injectWS as (...args: unknown[]) => ReturnType<typeof injectWS>).call(this, path, { ...context, headers: { host: 'localhost:80', ...context.headers } }, ...rest)
  } as typeof fastify.injectWS

  const wss = fastify.websocketServer
  const logCompleted = completedLogger(fastify)
  const gate: Gate = { finish, handOver: new HandOver(wss, () => closing), get leases () { return leases } }
  const errorHandler = (websocket?.errorHandler ?? defaultErrorHandler) as unknown as ErrorHandler
  entry.on('upgrade', onUpgrade)
  // The setting goes in every new session's first SETTINGS frame: a client
  // decides from that frame whether it may send an extended CONNECT.
  const h2server = server as unknown as Http2Server | Http2SecureServer
  // Fastify's idle timeout of a session, which a session with open WebSockets is exempt from.
  const sessionTimeout = fastify.initialConfig.http2SessionTimeout as number
  if (http2) {
    h2server.updateSettings({ enableConnectProtocol: true })
    h2server.on('connect', onConnect)
  }
  // `Upgrade: websocket` without `Connection: upgrade` is not an upgrade to
  // Node, which sends it down the ordinary request path. It is a malformed
  // WebSocket handshake, answered here before Fastify sees it.
  const handlers = server.listeners('request') as RequestListener[]
  server.removeAllListeners('request')
  server.on('request', onRequest)
  fastify.addHook('onClose', (_instance, done) => {
    entry.removeListener('upgrade', onUpgrade)
    h2server.removeListener('connect', onConnect)
    server.removeListener('request', onRequest)
    for (const handler of handlers) server.on('request', handler)
    delete server[kInstalled]
    // This node's leases go (its connections are closed by now).
    if (leases === undefined) {
      done()
      return
    }
    leases.close().then(() => { done() }, done)
  })

  function onRequest (this: unknown, req: IncomingMessage, res: ServerResponse): void {
    // With ws's `server` option, a real upgrade on Fastify's own server comes
    // this way too (nothing listens for it there): an ordinary request then.
    if (isWebSocketUpgrade(req.headers.upgrade) && !asksUpgrade(req.headers.connection)) {
      const err = new FST_WS_GATE_BAD_REQUEST('Missing or invalid Connection header: expected "upgrade"')
      fastify.log.debug({ statusCode: 400, reason: err.message }, 'malformed WebSocket upgrade request')
      const body = errorBody(400, err.message, err.code)
      res.writeHead(400, { 'Content-Type': JSON_TYPE, 'Content-Length': body.length, Connection: 'close' }).end(body)
      return
    }
    for (const handler of handlers) handler.call(this, req, res)
  }

  function onUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const checked = checkUpgrade(req, requireHost)
    if (!Array.isArray(checked)) fastify.log.debug({ statusCode: checked.error.statusCode, reason: checked.error.message }, 'malformed WebSocket upgrade request')
    const early = Array.isArray(checked) ? turnedAway(0) : checked
    if (early !== undefined) {
      publishEarly(req.url as string, outcomeOf(early), early.error.statusCode)
      writeDenial(socket, errorDenial(early.error, early.headers), fastify.log, limits)
      return
    }
    const upgrade = new Upgrade(req.url as string, gate)
    upgrade.wire = new Http1Upgrade(req, socket, head, checked as string[], limits, upgrade)
    ;(req as GateRequest)[kUpgrade] = upgrade
    inflight++
    relay.forward(req, socket, head)
    // Not answered, and not in a route's handler (where the handshake has the
    // wire watch the socket): it waits in async hooks.
    if (upgrade.route === null) upgrade.wire.hold()
  }

  // An extended CONNECT (RFC 8441): a WebSocket handshake on one stream of an
  // HTTP/2 session. The same checks, answers and routing as an upgrade; the
  // request is routed as the GET of the route it names.
  function onConnect (req: Http2ServerRequest, res: Http2ServerResponse): void {
    // With https.allowHTTP1, an HTTP/1.1 CONNECT comes here too, as
    // (IncomingMessage, socket, head): no route serves a tunnel, so it is
    // answered 405 on its socket, as an upgrade with another method is.
    if (req.httpVersionMajor !== 2) {
      const socket = res as unknown as Duplex
      publishEarly(req.url, 'rejected', 405)
      writeDenial(socket, errorDenial(new FST_WS_GATE_METHOD_NOT_ALLOWED('CONNECT'), ALLOW_GET), fastify.log, limits)
      return
    }
    const { headers } = req
    const stream = req.stream
    const checked = checkConnect(headers)
    if (!Array.isArray(checked)) fastify.log.debug({ statusCode: checked.error.statusCode, reason: checked.error.message }, 'malformed WebSocket handshake over HTTP/2')
    const early = Array.isArray(checked) ? turnedAway((stream.session as PendingSession)[kSessionPending] ?? 0) : checked
    if (early !== undefined) {
      publishEarly(req.url, outcomeOf(early), early.error.statusCode)
      writeStreamDenial(stream, errorDenial(early.error, early.headers), fastify.log, limits)
      return
    }
    const upgrade = new Upgrade(req.url, gate)
    const wire = upgrade.wire = new Http2Upgrade(req as unknown as IncomingMessage, stream, checked as string[], limits, upgrade, sessionTimeout)
    ;(req as unknown as GateRequest)[kUpgrade] = upgrade
    inflight++
    const session = stream.session as PendingSession
    session[kSessionPending] = (session[kSessionPending] ?? 0) + 1
    ;(req as { method: string }).method = 'GET'
    fastify.routing(req as never, res as never)
    if (upgrade.route === null) wire.hold()
  }

  // Why an upgrade that passed its checks is answered before routing: the
  // server is closing, or too many are pending, on the server or on the one
  // HTTP/2 connection (`onSession` of them) it came on.
  function turnedAway (onSession: number): RequestProblem | undefined {
    if (closing) return { error: new FST_WS_GATE_SHUTTING_DOWN(), headers: RETRY_LATER }
    const full = inflight >= maxPendingHandshakes
    if (!full && onSession < MAX_PENDING_PER_SESSION) return undefined
    shed++
    if (full) {
      fastify.log.debug({ statusCode: 503, pending: inflight }, 'upgrade shed: too many pending handshakes')
      return { error: new FST_WS_GATE_OVERLOADED(maxPendingHandshakes), headers: RETRY_LATER }
    }
    fastify.log.debug({ statusCode: 503, pending: onSession }, 'upgrade shed: too many pending handshakes on one HTTP/2 connection')
    return { error: new FST_WS_GATE_OVERLOADED(`${MAX_PENDING_PER_SESSION} on one HTTP/2 connection`), headers: RETRY_LATER }
  }

  // What @fastify/websocket does once ws has a connection for a route: the
  // server's 'connection' event, then the route's WebSocket handler, its
  // errors (and the socket's) through @fastify/websocket's errorHandler. Here
  // for an HTTP/2 stream, which never passes through @fastify/websocket.
  function connected (instance: FastifyInstance, handler: WebSocketHandler, ws: WebSocket, request: FastifyRequest, reply: FastifyReply): void {
    wss.emit('connection', ws, request.raw)
    ws.on('error', (error) => { errorHandler.call(instance, error, ws, request, reply) })
    let result: unknown
    try {
      result = handler.call(instance, ws, request)
    } catch (err) {
      errorHandler.call(instance, err as Error, ws, request, reply)
      return
    }
    // As @fastify/websocket: anything with a catch() is a promise of the handler's outcome.
    if (typeof (result as Promise<unknown> | null)?.catch === 'function') (result as Promise<unknown>).catch((err: Error) => { errorHandler.call(instance, err, ws, request, reply) })
  }

  // Every outcome of an upgrade that passed the checks comes here, once: it
  // leaves the count, is published, and (when the gate or ws answered, not
  // Fastify's reply, which logs its own) is logged as Fastify logs a request.
  function finish (upgrade: Upgrade, outcome: HandshakeEvent['outcome'], status: number | null, logged: number | null): void {
    if (upgrade.finished) return
    upgrade.finished = true
    inflight--
    if (upgrade.wire instanceof Http2Upgrade) {
      const session = upgrade.wire.session as PendingSession
      session[kSessionPending] = (session[kSessionPending] as number) - 1
    }
    publish(upgrade, outcome, status)
    const { request, reply } = upgrade
    if (logged === null || request === undefined || reply === undefined) return
    reply.code(logged)
    logCompleted(request, reply)
  }

  // Where an HTTP/1.1 upgrade is handed to ws (an HTTP/2 one goes from the
  // route's wrapper, openStream): only one the gate admitted (a plain WebSocket route's, or an accepted handshake's); the
  // hand-over answers 503 itself once shutdown has begun.
  wss.handleUpgrade = function gateHandleUpgrade (req: IncomingMessage, socket: Duplex, _head: Buffer, done: (ws: WebSocket, req: IncomingMessage) => void) {
    const upgrade = upgradeOf(req)
    // Only HTTP/1.1 upgrades come here: @fastify/websocket never sees an HTTP/2 one.
    if (upgrade === undefined || !upgrade.wire.admitted) {
      const err = new FST_WS_GATE_UNGATED_ROUTE(`ws's handleUpgrade() for ${JSON.stringify(req.url)}`)
      fastify.log.error({ err }, 'upgrade refused: it did not pass the gate')
      if (upgrade === undefined) {
        writeDenial(socket, errorDenial(INTERNAL_ERROR), fastify.log, limits)
        return
      }
      upgrade.expected = 'error'
      upgrade.wire.deny(errorDenial(INTERNAL_ERROR), fastify.log)
      return
    }
    // The request lives as long as the connection; what the gate knew of
    // its upgrade need not.
    ;(req as GateRequest)[kUpgrade] = undefined
    upgrade.wire.accept(gate.handOver, upgrade.log, upgrade.lease === undefined ? done : (ws, req) => { leases?.opened(upgrade.lease as string, ws); done(ws, req) })
  } as WebSocketServer['handleUpgrade']

  // Every route the gate saw is marked; when routes were declared before the
  // gate, an upgrade routed to one of them is refused before any of the
  // route's own hooks or its handler run. A root hook, which Fastify gives to
  // every context, even those made before it; only then, as it costs every
  // request. (A route added later through a context made before the gate,
  // kept past its plugin, is seen by neither the gate nor @fastify/websocket:
  // ws never gets its upgrades, which gateHandleUpgrade() refuses.)
  if (earlier !== '(empty tree)') {
    fastify.addHook('onRequest', function refuseUngatedUpgrades (request, reply, done) {
      const upgrade = upgradeOf(request.raw)
      if (upgrade !== undefined && !request.is404 && request.routeOptions.config[kGated as never] !== true) {
        const where = `${request.method} ${request.routeOptions.url as string}`
        request.log.error({ err: new FST_WS_GATE_UNGATED_ROUTE(`route ${where}`) }, 'upgrade refused: its route was declared before fastify-ws-gate was registered')
        deny(request, reply, INTERNAL_ERROR)
      }
      done()
    })
  }

  // Replies sent through Fastify to an upgrade request (an auth hook's 401, the
  // error handler's 500, the 404 handler) end the connection: say so. And they
  // must not be what a denial can never be: a 1xx (a bare 101 would tell the
  // client it connected), or a status message that would corrupt the head.
  fastify.addHook('onSend', (request, reply, payload, done) => {
    const upgrade = upgradeOf(request.raw)
    if (upgrade === undefined) {
      done(null, payload)
      return
    }
    upgrade.wire.replied()
    // Over HTTP/2 the stream ends, and the session lives on.
    // (HTTP/2 has no status message: Node warns when it is read.)
    if (upgrade.wire instanceof Http1Upgrade) {
      reply.header('connection', 'close')
      const { statusMessage } = reply.raw
      if (statusMessage !== undefined && !isStatusMessage(statusMessage)) {
        request.log.error({ err: new FST_WS_GATE_INVALID_REPLY(`status message ${JSON.stringify(statusMessage)}`) }, 'invalid reply to an upgrade request')
        reply.raw.statusMessage = ''
      }
    }
    upgrade.route ??= request.routeOptions.url ?? null
    if (reply.statusCode < 200) {
      request.log.error({ err: new FST_WS_GATE_INVALID_REPLY(`status ${reply.statusCode}`) }, 'invalid reply to an upgrade request')
      reply.code(500).type(JSON_TYPE)
      finish(upgrade, 'error', 500, null)
      done(null, errorBody(500, 'Internal Server Error'))
      return
    }
    // A hook's reply, or the 404 handler's (a failed handshake handler was reported when it failed).
    finish(upgrade, 'rejected', reply.statusCode, null)
    done(null, payload)
  })

  // The gate's own answer to a routed upgrade.
  function deny (request: FastifyRequest, reply: FastifyReply, err: { statusCode: number, code?: string, message: string }, extra: HeaderPairs = []): void {
    reply.hijack()
    const upgrade = upgradeOf(request.raw) as Upgrade
    upgrade.route = request.routeOptions.url as string
    upgrade.routed(request, reply)
    upgrade.expected = err.statusCode === 500 ? 'error' : 'rejected'
    upgrade.wire.deny(errorDenial(err, extra), request.log)
  }

  fastify.addHook('onRoute', (route) => {
    route.config = { ...route.config, [kGated]: true }
    const methods = ([] as string[]).concat(route.method)
    const isWebSocket = route.websocket === true || typeof route.wsHandler === 'function'
    const { handshake, handshakeTimeout: routeTimeout, allowedOrigins, rejectVia: routeRejectVia, connectionLimit } = route
    const where = `${methods.join(',')} ${route.url}`
    if (allowedOrigins !== undefined && !isWebSocket) {
      throw new FST_WS_GATE_INVALID_ROUTE_OPTION('allowedOrigins', where, 'needs websocket: true')
    }
    const originCheck = allowedOrigins === undefined
      ? origins
      : originsOption(allowedOrigins, (problem) => new FST_WS_GATE_INVALID_ROUTE_OPTION('allowedOrigins', where, problem))
    if (handshake !== undefined && typeof handshake !== 'function') {
      throw new FST_WS_GATE_INVALID_ROUTE_OPTION('handshake', where, 'must be a function')
    }
    if ((handshake !== undefined || routeTimeout !== undefined) && !isWebSocket) {
      throw new FST_WS_GATE_INVALID_ROUTE_OPTION(handshake !== undefined ? 'handshake' : 'handshakeTimeout', where, 'needs websocket: true')
    }
    if (routeRejectVia !== undefined) {
      if (handshake === undefined) throw new FST_WS_GATE_INVALID_ROUTE_OPTION('rejectVia', where, 'needs a handshake handler')
      checkRejectVia(routeRejectVia, (problem) => new FST_WS_GATE_INVALID_ROUTE_OPTION('rejectVia', where, problem))
    }
    if (routeTimeout !== undefined) {
      const problem = checkTimeout(routeTimeout)
      if (problem !== undefined) throw new FST_WS_GATE_INVALID_ROUTE_OPTION('handshakeTimeout', where, problem)
      if (handshake === undefined) throw new FST_WS_GATE_INVALID_ROUTE_OPTION('handshakeTimeout', where, 'needs a handshake handler')
    }
    let rules: Rules | undefined
    if (connectionLimit !== undefined) {
      if (!isWebSocket) throw new FST_WS_GATE_INVALID_ROUTE_OPTION('connectionLimit', where, 'needs websocket: true')
      rules = checkRules(connectionLimit, where, route.url)
    }
    // A HEAD route (including the one Fastify adds beside a GET) is never upgraded.
    if (methods.every((method) => method === 'HEAD')) return
    if (rules !== undefined) leases ??= new Leases({}, fastify.log)

    const next = route.handler as RouteHandlerMethod
    if (!isWebSocket) {
      route.handler = function notWebSocket (this: FastifyInstance, request, reply) {
        if (upgradeOf(request.raw) === undefined) return next.call(this, request, reply)
        request.log.debug({ statusCode: 400 }, 'upgrade request to a route without a WebSocket handler')
        deny(request, reply, new FST_WS_GATE_NOT_WEBSOCKET_ROUTE(request.method, request.routeOptions.url))
      }
      return
    }
    const settings: HandshakeSettings = rules === undefined
      ? { timeout: routeTimeout ?? handshakeTimeout, limits, registry }
      : { timeout: routeTimeout ?? handshakeTimeout, limits, registry, limiter: leases }
    const via = routeRejectVia ?? rejectVia
    // The route's URL pattern, for events: read from Fastify once, as every
    // other event reads it (request.routeOptions builds a new object on every read).
    let pattern: string | undefined
    const drivesEngine = handshake !== undefined && kDrivesEngine in handshake
    // Over HTTP/2, an admitted handshake's stream goes to ws here, and the
    // route's WebSocket handler runs, as @fastify/websocket's handler (next)
    // does for an upgrade.
    const wsHandler = (route as unknown as Record<symbol, WebSocketHandler | undefined>)[kWsHandler]
    const overHttp2 = function openStream (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): void {
      reply.hijack()
      const upgrade = upgradeOf(request.raw) as Upgrade
      ;(request.raw as GateRequest)[kUpgrade] = undefined
      upgrade.wire.accept(gate.handOver, upgrade.log, (ws) => {
        if (upgrade.lease !== undefined) leases?.opened(upgrade.lease, ws)
        connected(this, wsHandler as WebSocketHandler, ws, request, reply)
      })
    }
    route.handler = function gated (this: FastifyInstance, request, reply) {
      const upgrade = upgradeOf(request.raw)
      if (upgrade === undefined) return next.call(this, request, reply)
      const proceed = upgrade.wire instanceof Http2Upgrade ? overHttp2 : next
      // Upgrades still in hooks when close() began are answered like pending ones.
      if (closing) {
        deny(request, reply, new FST_WS_GATE_SHUTTING_DOWN(), RETRY_LATER)
        return
      }
      if (originCheck !== null && !allowOrigin(originCheck, request)) {
        deny(request, reply, new FST_WS_GATE_ORIGIN_NOT_ALLOWED(JSON.stringify(request.headers.origin)))
        return
      }
      upgrade.route = pattern ??= request.routeOptions.url as string
      upgrade.routed(request, reply)
      if (handshake === undefined && rules === undefined) {
        upgrade.wire.admit(undefined, undefined)
        return proceed.call(this, request, reply)
      }
      upgrade.handle(this, proceed, rules)
      if (handshake === undefined) {
        // No decision of its own, but limits to take first.
        new Handshake(upgrade.wire.offered, upgrade, settings, closesWithFrame(via, request.headers)).acceptAsIs()
        return
      }
      const engine = new Handshake(upgrade.wire.offered, upgrade, settings, closesWithFrame(via, request.headers))
      if (drivesEngine) (handshake as unknown as (request: FastifyRequest, handshake: Handshake) => void).call(this, request, engine)
      else runHandshake(this, handshake, engine, request)
    } as RouteOptions['handler']
  })
}

const INTERNAL_ERROR = { statusCode: 500, message: 'Internal Server Error' }
const ALLOW_GET: HeaderPairs = [['Allow', 'GET']]

// The outcome of an upgrade answered before routing.
function outcomeOf (early: RequestProblem): HandshakeEvent['outcome'] {
  return early.error instanceof FST_WS_GATE_OVERLOADED ? 'shed' : 'rejected'
}

// @fastify/websocket's, for a connection it did not see (one over HTTP/2).
function defaultErrorHandler (error: Error, socket: WebSocket, request: FastifyRequest): void {
  request.log.error(error)
  socket.terminate()
}

// Logs a request the gate answered as Fastify logs one it answered itself.
// Fastify 5.10 and later have a LogController (kept under a symbol of their
// own), which decides whether request lines are written (the
// disableRequestLogging option, or an isLogDisabled of the app's) and writes
// them; before 5.10 there is only the option. The suite runs on a Fastify
// with a LogController, so the older way is not covered.
/* c8 ignore start */
function completedLogger (fastify: FastifyInstance): (request: FastifyRequest, reply: FastifyReply) => void {
  const symbol = Object.getOwnPropertySymbols(fastify).find((s) => s.description === 'fastify.logController')
  const controller = symbol === undefined ? undefined : (fastify as unknown as Record<symbol, LogController>)[symbol]
  if (controller !== undefined) return (request, reply) => { controller.requestCompleted(null, request, reply) }
  const disabled = fastify.initialConfig.disableRequestLogging as boolean | ((request: FastifyRequest) => boolean) | undefined
  return (request, reply) => {
    if (typeof disabled === 'function' ? disabled(request) : disabled === true) return
    request.log.info({ res: reply, responseTime: reply.elapsedTime }, 'request completed')
  }
}
/* c8 ignore stop */

// A predicate that throws is a bug in the app: the origin is refused, and logged.
function allowOrigin (check: OriginCheck, request: FastifyRequest): boolean {
  const origin = request.headers.origin
  try {
    if (check(origin)) return true
  } catch (err) {
    request.log.error({ err }, 'allowedOrigins predicate threw; origin refused')
    return false
  }
  request.log.debug({ statusCode: 403, origin }, 'upgrade refused: origin not allowed')
  return false
}

function runHandshake (instance: FastifyInstance, handshake: HandshakeHandler, engine: Handshake, request: FastifyRequest): void {
  let result: unknown
  try {
    result = handshake.call(instance, request, engine.context())
  } catch (err) {
    engine.fail(err)
    return
  }
  engine.decide(result)
}

export const fastifyWsGate = fp(plugin, {
  fastify: '5.x',
  name: 'fastify-ws-gate'
})
