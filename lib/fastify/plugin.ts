// The Fastify face of the handshake engine.
//
// How a request travels: we own the 'upgrade' listener of the server that
// receives upgrades (Fastify's own, or ws's `server` option) and answer
// malformed handshakes there, before any application code. Valid ones go on
// to @fastify/websocket, which listens to a relay instead of a server and
// routes them through Fastify, so hooks and schema validation run as for any
// request. Our onRoute hook wraps the handler of every route: a WebSocket
// route's wrapper admits the upgrade (after its `handshake`, if it has one),
// a plain route's answers 400 instead of letting @fastify/websocket send a
// 101 and hang up. ws is handed an upgrade only through our wrapper of its
// handleUpgrade(), which refuses any the gate did not admit.
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import fastifyWebsocket from '@fastify/websocket'
import type {
  FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, RouteHandlerMethod, RouteOptions
} from 'fastify'
import fp from 'fastify-plugin'
import type { WebSocket, WebSocketServer } from 'ws'
import {
  FST_WS_GATE_BAD_REQUEST, FST_WS_GATE_HTTP2_NOT_SUPPORTED, FST_WS_GATE_INVALID_OPTION, FST_WS_GATE_INVALID_REPLY,
  FST_WS_GATE_INVALID_ROUTE_OPTION, FST_WS_GATE_NON_ERROR_THROWN, FST_WS_GATE_NOT_WEBSOCKET_ROUTE,
  FST_WS_GATE_ORIGIN_NOT_ALLOWED, FST_WS_GATE_OVERLOADED, FST_WS_GATE_REGISTERED_AFTER_ROUTES, FST_WS_GATE_REGISTRATION,
  FST_WS_GATE_SHUTTING_DOWN, FST_WS_GATE_UNGATED_ROUTE
} from '../errors.js'
import { describe } from '../engine/denial.js'
import { Handshake, HandshakeRegistry, type HandshakeFace, type HandshakeSettings, type HandshakeState } from '../engine/handshake.js'
import { checkRejectVia, closesWithFrame, type Refusal } from '../engine/refusal.js'
import { injectUpgrade, type InjectHandshakeOptions } from '../engine/inject.js'
import type { OriginCheck } from '../engine/origin.js'
import { publish, publishEarly, started, OUTCOMES, type HandshakeEvent, type Reported } from './observe.js'
import { checkTimeout, originsOption, settings } from './options.js'
import { kDrivesEngine } from './driver.js'
import { errorBody, guard, isStatusMessage, JSON_TYPE, RETRY_LATER, sendError, type DenialLimits, type HeaderPairs } from '../engine/http.js'
import { checkUpgrade, isWebSocketUpgrade } from '../engine/request.js'
import type { FastifyWsGateOptions, HandshakeHandler } from './types.js'

// Set by our 'upgrade' listener on the request of an upgrade that passed the
// checks: its presence marks a WebSocket upgrade. On the request, not the
// socket: @fastify/websocket's injectWS() makes requests without one.
const kUpgrade = Symbol('fastify-ws-gate.upgrade')
// In the config of every route the gate has seen (its onRoute hook ran).
const kGated = Symbol('fastify-ws-gate.gated')
// Set on the server once the gate is installed on it.
const kInstalled = Symbol('fastify-ws-gate.installed')
// How long app.close() waits for a client to answer close code 1001.
const CLOSE_GRACE = 2000

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void
type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void
type VerifyClient = (info: { req: IncomingMessage }, done?: (verified: boolean, code?: number, message?: string, headers?: object) => void) => boolean | undefined
type HandUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, done: (ws: WebSocket, req: IncomingMessage) => void) => void

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
  const { websocket } = options
  // Handshakes whose handler is running: shutdown answers them.
  const pending = new HandshakeRegistry()
  // Upgrades between our checks and their answer (in hooks, in the handler,
  // or being upgraded): what maxPendingHandshakes bounds. Each leaves the
  // count once, when its answer starts (a 101, a denial, a reply) or its
  // socket closes.
  let inflight = 0
  const release = (upgrade: Upgrade): void => {
    if (!upgrade.counted) return
    upgrade.counted = false
    inflight--
  }
  let shed = 0
  // The gate owns the server's upgrade path, which is server-wide; from a
  // child context its hooks would cover only some of the routes it receives.
  const server = fastify.server as typeof fastify.server & { [kInstalled]?: true, requireHostHeader?: boolean }
  if (!Object.prototype.hasOwnProperty.call(fastify, 'server')) {
    throw new FST_WS_GATE_REGISTRATION('it was registered in a child context (routes in every context are gated from the root)')
  }
  if (server[kInstalled] === true) throw new FST_WS_GATE_REGISTRATION('it is already registered on this server')
  if (fastify.initialConfig.http2 === true) throw new FST_WS_GATE_HTTP2_NOT_SUPPORTED()
  server[kInstalled] = true
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
    get shed () { return shed }
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
      pending.shutdown()
    }
    return (close as (...args: unknown[]) => unknown).apply(this, args)
  } as typeof fastify.close

  // @fastify/websocket listens to the relay instead of a server, so that
  // nothing reaches Fastify's routing before our checks.
  const relay = new Relay(onUpgrade)
  // The server whose upgrades the gate receives.
  let entry: EventEmitter = server
  const registeredFirst = fastify.hasDecorator('websocketServer')
  if (registeredFirst) {
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
    if (external !== undefined && external !== null) entry = external as EventEmitter
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
    // First, so that ws completes no upgrade from now on (one its
    // verifyClient still holds, say); it reports once every client is gone.
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
  const gate: GateParts = { release, hold, report, admit, wss, limits }
  entry.on('upgrade', onUpgrade)
  // `Upgrade: websocket` without `Connection: upgrade` is not an upgrade to
  // Node, which sends it down the ordinary request path. It is a malformed
  // WebSocket handshake, answered here before Fastify sees it.
  const handlers = server.listeners('request') as RequestListener[]
  server.removeAllListeners('request')
  server.on('request', onRequest)
  fastify.addHook('onClose', (_instance, done) => {
    entry.removeListener('upgrade', onUpgrade)
    server.removeListener('request', onRequest)
    for (const handler of handlers) server.on('request', handler)
    delete server[kInstalled]
    done()
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
    if (!Array.isArray(checked)) {
      fastify.log.debug({ statusCode: checked.error.statusCode, reason: checked.error.message }, 'malformed WebSocket upgrade request')
      publishEarly(req.url as string, 'rejected', checked.error.statusCode)
      sendError(socket, checked.error, checked.headers, limits)
      return
    }
    if (closing) {
      publishEarly(req.url as string, 'rejected', 503)
      sendError(socket, new FST_WS_GATE_SHUTTING_DOWN(), RETRY_LATER, limits)
      return
    }
    if (inflight >= maxPendingHandshakes) {
      shed++
      publishEarly(req.url as string, 'shed', 503)
      fastify.log.debug({ statusCode: 503, pending: inflight }, 'upgrade shed: too many pending handshakes')
      sendError(socket, new FST_WS_GATE_OVERLOADED(maxPendingHandshakes), RETRY_LATER, limits)
      return
    }
    const upgrade = new Upgrade(req.url as string, socket, checked, head, gate)
    ;(req as GateRequest)[kUpgrade] = upgrade
    inflight++
    relay.forward(req, socket, head)
    // Answered already, or in a handshake handler (its route is known), where
    // the engine watches the socket while the decision is pending and
    // releases the count if the client leaves.
    if (!upgrade.counted || upgrade.route !== null) return
    hold(upgrade)
  }
  // An upgrade still counted when the gate hands it on (to async hooks, to
  // the app's error handler, to ws verifying the client): its socket may
  // close first. Most upgrades are answered before the gate lets go, so
  // their sockets get no listener of ours (docs/benchmarks.md).
  function hold (upgrade: Upgrade): void {
    // Handed on twice (async hooks, then ws verifying the client): one listener.
    if (!upgrade.counted || upgrade.held) return
    upgrade.held = true
    upgrade.socket.once('close', () => {
      if (!upgrade.counted) return
      release(upgrade)
      report(upgrade, 'aborted', null)
    })
  }

  // Publishes an upgrade's outcome, and logs it as Fastify logs a request
  // it answered: only for answers that did not go through Fastify's reply
  // (which logs its own), and not for a client that left.
  // `wire`: the status on the wire, when it is not the outcome's (a
  // close-frame refusal's 101).
  function report (upgrade: Upgrade, outcome: HandshakeEvent['outcome'], status: number | null, wire = status): void {
    if (upgrade.reported) return
    publish(upgrade, outcome, status)
    const { request, reply } = upgrade
    if (request === undefined || wire === null || reply === undefined) return
    reply.code(wire)
    logCompleted(request, reply)
  }
  const logCompleted = completedLogger(fastify)

  // The one place where an upgrade is handed to ws: only one the gate
  // admitted (a plain WebSocket route's, or an accepted handshake's), never
  // once shutdown has begun.
  const handUpgrade = wss.handleUpgrade.bind(wss) as HandUpgrade
  wss.handleUpgrade = function gateHandleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer, done: (ws: WebSocket, req: IncomingMessage) => void) {
    const upgrade = upgradeOf(req)
    if (upgrade === undefined || !upgrade.admitted) {
      const err = new FST_WS_GATE_UNGATED_ROUTE(`ws's handleUpgrade() for ${JSON.stringify(req.url)}`)
      fastify.log.error({ err }, 'upgrade refused: it did not pass the gate')
      if (upgrade !== undefined) {
        release(upgrade)
        report(upgrade, 'error', 500)
      }
      sendError(socket, { statusCode: 500, message: 'Internal Server Error' }, [], limits)
      return
    }
    // ws's `path` option: it would answer any other path 400 itself.
    if (!wss.shouldHandle(req)) {
      release(upgrade)
      report(upgrade, 'rejected', 400)
      sendError(socket, new FST_WS_GATE_BAD_REQUEST(`This WebSocket server serves ${JSON.stringify(wss.options.path)} only`), [], limits)
      return
    }
    handUpgrade(req, socket, head, done)
    hold(upgrade)
  } as WebSocketServer['handleUpgrade']

  // What ws finds wrong after our checks (a malformed Sec-WebSocket-Extensions
  // offer): with a listener here, ws leaves the answer to us.
  wss.on('wsClientError', (err: Error, socket: Duplex, req: IncomingMessage) => {
    const upgrade = upgradeOf(req) as Upgrade
    release(upgrade)
    report(upgrade, 'rejected', 400)
    sendError(socket, new FST_WS_GATE_BAD_REQUEST(err.message), [], limits)
  })

  // ws's verifyClient may still turn an admitted upgrade away (and writes the
  // answer itself): the outcome is what it decided, never the 101.
  const verifyClient = wss.options.verifyClient as VerifyClient | null | undefined
  if (typeof verifyClient === 'function') {
    const refused = (req: IncomingMessage, status: number): void => {
      const upgrade = upgradeOf(req) as Upgrade
      release(upgrade)
      report(upgrade, 'rejected', status)
    }
    wss.options.verifyClient = (verifyClient.length === 2
      ? (info: { req: IncomingMessage }, done: (verified: boolean, code?: number, message?: string, headers?: object) => void) => {
          verifyClient(info, (verified, code, message, headers) => {
            if (!verified) {
              refused(info.req, code !== undefined && code !== 0 ? code : 401)
            } else if (closing) {
              // Verified after shutdown began: no 101 now; ws would answer 503
              // itself, without Retry-After.
              const upgrade = upgradeOf(info.req) as Upgrade
              release(upgrade)
              report(upgrade, 'rejected', 503)
              sendError(upgrade.socket, new FST_WS_GATE_SHUTTING_DOWN(), RETRY_LATER, limits)
              return
            }
            done(verified, code, message, headers)
          })
        }
      : (info: { req: IncomingMessage }) => {
          const verified = verifyClient(info)
          if (!verified) refused(info.req, 401)
          return verified
        }) as never
  }

  // The 101 is written by ws; these two hooks make it carry what the route's
  // decision said. Requests without a decision keep ws's behaviour.
  const chooseProtocol = wss.options.handleProtocols
  wss.options.handleProtocols = (protocols: Set<string>, req: IncomingMessage) => {
    const upgrade = upgradeOf(req)
    if (upgrade?.acceptedHeaders !== undefined) return upgrade.acceptedProtocol ?? false
    return chooseProtocol != null ? chooseProtocol(protocols, req) : protocols.values().next().value as string
  }
  wss.on('headers', (lines: string[], req: IncomingMessage) => {
    // Every upgrade reaches ws through gateHandleUpgrade, so it has a record.
    const upgrade = upgradeOf(req) as Upgrade
    // The request lives as long as the connection; what the gate knew of its
    // upgrade need not (nothing reads it after the 101).
    ;(req as GateRequest)[kUpgrade] = undefined
    release(upgrade)
    // ws writes the 101 right after this event: the outcome is on the wire.
    // A close-frame refusal's outcome is its reject() status.
    if (upgrade.refusal === undefined) report(upgrade, 'accepted', 101)
    else report(upgrade, 'rejected', upgrade.refusal, 101)
    const headers = upgrade.acceptedHeaders
    if (headers !== undefined) for (let i = 0; i < headers.length; i++) lines.push(`${headers[i][0]}: ${headers[i][1]}`)
  })

  // Every route the gate saw is marked; an upgrade routed to one it never saw
  // (declared before the gate was registered) is refused before any of the
  // route's own hooks or its handler run. A root hook, which Fastify gives to
  // every context, even those made before it.
  fastify.addHook('onRequest', (request, reply, done) => {
    const upgrade = upgradeOf(request.raw)
    if (upgrade !== undefined && !request.is404 && request.routeOptions.config[kGated as never] !== true) {
      const where = `${request.method} ${request.routeOptions.url as string}`
      request.log.error({ err: new FST_WS_GATE_UNGATED_ROUTE(`route ${where}`) }, 'upgrade refused: its route was declared before fastify-ws-gate was registered')
      deny(request, reply, { statusCode: 500, message: 'Internal Server Error' })
    }
    done()
  })

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
    release(upgrade)
    // Like the engine's own denials, a reply must go out in denialTimeout.
    guard(upgrade.socket, limits.timeout)
    reply.header('connection', 'close')
    const { statusMessage } = reply.raw
    if (statusMessage !== undefined && !isStatusMessage(statusMessage)) {
      request.log.error({ err: new FST_WS_GATE_INVALID_REPLY(`status message ${JSON.stringify(statusMessage)}`) }, 'invalid reply to an upgrade request')
      reply.raw.statusMessage = ''
    }
    upgrade.route ??= request.routeOptions.url ?? null
    if (reply.statusCode < 200) {
      request.log.error({ err: new FST_WS_GATE_INVALID_REPLY(`status ${reply.statusCode}`) }, 'invalid reply to an upgrade request')
      reply.code(500).type(JSON_TYPE)
      publish(upgrade, 'error', 500)
      done(null, errorBody(500, 'Internal Server Error'))
      return
    }
    // A hook's reply, or the 404 handler's (a failed handshake handler was reported by the engine).
    publish(upgrade, 'rejected', reply.statusCode)
    done(null, payload)
  })

  // The gate's own answer to a routed upgrade, outside the engine.
  function deny (request: FastifyRequest, reply: FastifyReply, err: { statusCode: number, code?: string, message: string }, extra: HeaderPairs = []): void {
    reply.hijack()
    const upgrade = upgradeOf(request.raw) as Upgrade
    release(upgrade)
    upgrade.route = request.routeOptions.url as string
    upgrade.request = request
    upgrade.reply = reply
    report(upgrade, err.statusCode === 500 ? 'error' : 'rejected', err.statusCode)
    sendError(upgrade.socket, err, extra, limits)
  }

  // A routed upgrade the gate lets through to ws (see gateHandleUpgrade).
  function admit (upgrade: Upgrade, request: FastifyRequest, reply: FastifyReply): void {
    upgrade.admitted = true
    upgrade.request = request
    upgrade.reply = reply
  }

  fastify.addHook('onRoute', (route) => {
    route.config = { ...route.config, [kGated]: true }
    const methods = ([] as string[]).concat(route.method)
    const isWebSocket = route.websocket === true || typeof route.wsHandler === 'function'
    const { handshake, handshakeTimeout: routeTimeout, allowedOrigins, rejectVia: routeRejectVia } = route
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
    // A HEAD route (including the one Fastify adds beside a GET) is never upgraded.
    if (methods.every((method) => method === 'HEAD')) return

    const next = route.handler as RouteHandlerMethod
    if (!isWebSocket) {
      route.handler = function notWebSocket (this: FastifyInstance, request, reply) {
        if (upgradeOf(request.raw) === undefined) return next.call(this, request, reply)
        request.log.debug({ statusCode: 400 }, 'upgrade request to a route without a WebSocket handler')
        deny(request, reply, new FST_WS_GATE_NOT_WEBSOCKET_ROUTE(request.method, request.routeOptions.url))
      }
      return
    }
    const settings: HandshakeSettings = { timeout: routeTimeout ?? handshakeTimeout, limits, registry: pending }
    const via = routeRejectVia ?? rejectVia
    // The route's URL pattern, for events: read from Fastify once, as every
    // other event reads it (request.routeOptions builds a new object on every read).
    let pattern: string | undefined
    const drivesEngine = handshake !== undefined && kDrivesEngine in handshake
    route.handler = function gated (this: FastifyInstance, request, reply) {
      const upgrade = upgradeOf(request.raw)
      if (upgrade === undefined) return next.call(this, request, reply)
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
      if (handshake === undefined) {
        admit(upgrade, request, reply)
        return next.call(this, request, reply)
      }
      upgrade.handle(this, next, request, reply)
      const engine = new Handshake(upgrade.socket, upgrade.offered, upgrade, settings, closesWithFrame(via, request.headers))
      if (drivesEngine) (handshake as unknown as (request: FastifyRequest, gate: Handshake) => void).call(this, request, engine)
      else runHandshake(this, handshake, engine, request)
    } as RouteOptions['handler']
  })
}

// Whether a Connection header lists the `upgrade` option (RFC 9110 §7.6.1).
function asksUpgrade (connection: string | undefined): boolean {
  if (connection === undefined) return false
  for (const option of connection.split(',')) if (option.trim().toLowerCase() === 'upgrade') return true
  return false
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

// What every Upgrade needs of the plugin.
interface GateParts {
  release: (upgrade: Upgrade) => void
  hold: (upgrade: Upgrade) => void
  report: (upgrade: Upgrade, outcome: HandshakeEvent['outcome'], status: number | null, wire?: number | null) => void
  admit: (upgrade: Upgrade, request: FastifyRequest, reply: FastifyReply) => void
  wss: WebSocketServer
  limits: DenialLimits
}

// What the gate knows of one upgrade, from its checks to its answer. On a
// route with `handshake` it is also the engine's face in Fastify, and it
// keeps what the decision puts in the 101: one object per upgrade where
// there were three (docs/benchmarks.md, "Fewer objects per accepted handshake").
class Upgrade implements Reported, HandshakeFace {
  /** Whether the upgrade counts against maxPendingHandshakes. */
  counted = true
  /** Whether a 'close' listener of the gate's watches the socket (see hold()). */
  held = false
  /** Whether the gate lets ws complete it (see gateHandleUpgrade). */
  admitted = false
  route: string | null = null
  readonly started = started()
  reported = false
  /** Set once the upgrade is routed and answered by the gate or ws: for the log line. */
  request: FastifyRequest | undefined = undefined
  reply: FastifyReply | undefined = undefined
  /** Set when the handshake is accepted (or refused with a close frame): what goes into the 101. */
  acceptedProtocol: string | undefined = undefined
  acceptedHeaders: HeaderPairs | undefined = undefined
  /** A close-frame refusal's reject() status: the outcome published when its 101 goes out. */
  refusal: number | undefined = undefined
  readonly url: string
  readonly socket: Duplex
  /** The subprotocols the client offered. */
  readonly offered: string[]
  /** What the client sent after its request head (ws reads it as frames). */
  readonly head: Buffer
  readonly #gate: GateParts
  // Set by handle(), before the engine uses this face.
  #instance!: FastifyInstance
  #next!: RouteHandlerMethod
  #request!: FastifyRequest
  #reply!: FastifyReply

  constructor (url: string, socket: Duplex, offered: string[], head: Buffer, gate: GateParts) {
    this.url = url
    this.socket = socket
    this.offered = offered
    this.head = head
    this.#gate = gate
  }

  /** A gated route takes the upgrade: the route handler behind the gate, and the request. */
  handle (instance: FastifyInstance, next: RouteHandlerMethod, request: FastifyRequest, reply: FastifyReply): void {
    this.#instance = instance
    this.#next = next
    this.#request = request
    this.#reply = reply
  }

  get log (): FastifyRequest['log'] {
    return this.#request.log
  }

  upgrade (protocol: string | undefined, headers: HeaderPairs): void {
    this.acceptedProtocol = protocol
    this.acceptedHeaders = headers
    this.#request.log.debug({ protocol }, 'handshake accepted')
    this.#gate.admit(this, this.#request, this.#reply)
    this.#next.call(this.#instance, this.#request, this.#reply)
  }

  // The 101 goes out as for an accept, but straight from ws, so that the
  // route's handler (behind @fastify/websocket's) never runs.
  refuse ({ status, protocol, headers, code, reason }: Refusal): void {
    this.acceptedProtocol = protocol
    this.acceptedHeaders = headers
    this.refusal = status
    this.#reply.hijack()
    this.#gate.admit(this, this.#request, this.#reply)
    this.#gate.wss.handleUpgrade(this.#request.raw, this.socket, this.head, (ws) => {
      ws.close(code, reason)
      // Like a denial, a refusal must be over within denialTimeout, even with
      // a client that never answers the close frame.
      guard(this.socket, this.#gate.limits.timeout)
    })
  }

  error (err: unknown): void {
    this.#reply.send(err instanceof Error ? err : new FST_WS_GATE_NON_ERROR_THROWN(describe(err)))
    this.#gate.hold(this)
  }

  takeover (): void {
    this.#reply.hijack()
    this.#gate.release(this)
  }

  settled (state: HandshakeState, status: number | undefined): void {
    // An accept (or a close-frame refusal) is reported when ws writes its 101.
    if (state === 'accepted' || state === 'refused') return
    if (state === 'gone') this.#gate.release(this)
    // A failure with no status is answered by the app's error handler,
    // through Fastify's reply, which logs it.
    if (state !== 'failed' || status !== undefined) {
      this.request = this.#request
      this.reply = this.#reply
    }
    this.#gate.report(this, OUTCOMES[state as Exclude<HandshakeState, 'pending'>], state === 'gone' ? null : status ?? null)
  }
}

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

function runHandshake (instance: FastifyInstance, handshake: HandshakeHandler, gate: Handshake, request: FastifyRequest): void {
  let result: unknown
  try {
    result = handshake.call(instance, request, gate.context())
  } catch (err) {
    gate.fail(err)
    return
  }
  gate.decide(result)
}

export const fastifyWsGate = fp(plugin, {
  fastify: '5.x',
  name: 'fastify-ws-gate'
})
