// The Fastify face of the handshake engine.
//
// How a request travels: we own the server's 'upgrade' listener and answer
// malformed handshakes there, before any application code. Valid ones go on to
// @fastify/websocket (through a relay emitter), which routes them through
// Fastify, so hooks and schema validation run as for any request. Our onRoute
// hook wraps every route handler: on a WebSocket route with `handshake` the
// wrapper runs the handler and applies its decision; on a plain route it
// answers 400 instead of letting @fastify/websocket send a 101 and hang up.
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import fastifyWebsocket from '@fastify/websocket'
import type {
  FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, RouteHandlerMethod, RouteOptions
} from 'fastify'
import fp from 'fastify-plugin'
import type { WebSocketServer } from 'ws'
import {
  FST_WS_GATE_BAD_REQUEST, FST_WS_GATE_INVALID_OPTION, FST_WS_GATE_INVALID_REPLY, FST_WS_GATE_INVALID_ROUTE_OPTION,
  FST_WS_GATE_NON_ERROR_THROWN, FST_WS_GATE_NOT_WEBSOCKET_ROUTE, FST_WS_GATE_ORIGIN_NOT_ALLOWED, FST_WS_GATE_OVERLOADED,
  FST_WS_GATE_REGISTRATION, FST_WS_GATE_SHUTTING_DOWN
} from '../errors.js'
import { describe } from '../engine/denial.js'
import { Handshake, HandshakeRegistry, type HandshakeFace, type HandshakeSettings, type HandshakeState } from '../engine/handshake.js'
import { checkRejectVia, closesWithFrame, type Refusal } from '../engine/refusal.js'
import { injectUpgrade, type InjectHandshakeOptions } from '../engine/inject.js'
import type { OriginCheck } from '../engine/origin.js'
import { publish, publishEarly, publishSettled, started, type Reported } from './observe.js'
import { checkTimeout, originsOption, settings } from './options.js'
import { kDrivesEngine } from './driver.js'
import { closeAfter, errorBody, guard, isStatusMessage, JSON_TYPE, RETRY_LATER, sendError, type DenialLimits, type HeaderPairs } from '../engine/http.js'
import { checkUpgrade, isWebSocketUpgrade } from '../engine/request.js'
import type { FastifyWsGateOptions, HandshakeHandler } from './types.js'

// Set by our 'upgrade' listener on the socket of a request that passed the
// checks, until its 101 (a socket answered otherwise is closed): its presence
// marks a WebSocket upgrade. One object, one property, on the socket rather
// than the request, as the socket's 'close' listener needs it too.
const kUpgrade = Symbol('fastify-ws-gate.upgrade')
// Set on the server once the gate is installed on it.
const kInstalled = Symbol('fastify-ws-gate.installed')
// How long app.close() waits for a client to answer close code 1001.
const CLOSE_GRACE = 2000

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void

interface GateSocket extends Duplex {
  [kUpgrade]?: Upgrade | undefined
}

// @fastify/websocket's injectWS() makes requests without a socket.
const upgradeOf = (req: IncomingMessage): Upgrade | undefined => (req.socket as GateSocket | undefined)?.[kUpgrade]

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
  // An upgrade whose socket closes before any answer, while the gate has
  // handed it on (see hold()). One function for every upgrade rather than a
  // closure each; it stays on the socket once the upgrade is released (it
  // then does nothing).
  function onCountedClose (this: GateSocket): void {
    const upgrade = this[kUpgrade]
    if (upgrade === undefined || !upgrade.counted) return
    release(upgrade)
    publish(upgrade, 'aborted', null)
  }
  let shed = 0
  // The gate owns the server's upgrade path, which is server-wide; from a
  // child context its hooks would cover only some of the routes it receives.
  const server = fastify.server as typeof fastify.server & { [kInstalled]?: true }
  if (!Object.prototype.hasOwnProperty.call(fastify, 'server')) {
    throw new FST_WS_GATE_REGISTRATION('it was registered in a child context (routes in every context are gated from the root)')
  }
  if (server[kInstalled] === true) throw new FST_WS_GATE_REGISTRATION('it is already registered on this server')
  server[kInstalled] = true
  fastify.decorate('wsGate', {
    get pending () { return inflight },
    get shed () { return shed }
  })
  fastify.decorate('injectHandshake', async function injectHandshake (this: FastifyInstance, url: string, options?: InjectHandshakeOptions) {
    await this.ready()
    return injectUpgrade(server, url, options)
  })

  // Shutdown, first of all: pending handshakes get 503 with Retry-After (their
  // signals abort), and so does any upgrade that arrives from now on.
  let closing = false
  fastify.addHook('preClose', (done) => {
    closing = true
    pending.shutdown()
    done()
  })

  // @fastify/websocket listens to a relay instead of the server, so that
  // nothing reaches Fastify's routing before our checks.
  const relay = new EventEmitter()
  if (fastify.hasDecorator('websocketServer')) {
    if (websocket !== undefined) {
      throw new FST_WS_GATE_INVALID_OPTION('websocket', '@fastify/websocket is already registered; configure it there')
    }
    for (const listener of server.rawListeners('upgrade')) {
      server.removeListener('upgrade', listener as (...args: unknown[]) => void)
      relay.on('upgrade', listener as (...args: unknown[]) => void)
    }
  } else {
    await fastify.register(fastifyWebsocket, {
      preClose: closeConnections,
      ...websocket,
      options: { ...websocket?.options, server: relay as never }
    })
  }

  // Accepted connections get close code 1001 (unless the app gave its own
  // preClose to @fastify/websocket), and close resolves once they are gone.
  async function closeConnections (this: FastifyInstance): Promise<void> {
    const wss = this.websocketServer
    // Without clientTracking ws keeps no list; there is nothing to close here then.
    // A client that does not answer the close frame is cut off after a grace
    // period (ws alone would wait 30 s, longer than Fastify waits for preClose).
    const closed = [...(wss.clients ?? [])].map((client) => new Promise((resolve) => {
      const timer = setTimeout(() => client.terminate(), CLOSE_GRACE)
      client.once('close', () => {
        clearTimeout(timer)
        resolve(undefined)
      })
      client.close(1001, 'Server shutting down')
    }))
    await Promise.all(closed)
    await new Promise((resolve) => wss.close(resolve))
  }

  const wss = fastify.websocketServer
  const gate: GateParts = { release, hold, wss, limits }
  server.on('upgrade', onUpgrade)
  // `Upgrade: websocket` without `Connection: upgrade` is not an upgrade to
  // Node, which sends it down the ordinary request path. It is a malformed
  // WebSocket handshake, answered here before Fastify sees it.
  const handlers = server.listeners('request') as RequestListener[]
  server.removeAllListeners('request')
  server.on('request', onRequest)
  fastify.addHook('onClose', (_instance, done) => {
    server.removeListener('upgrade', onUpgrade)
    server.removeListener('request', onRequest)
    for (const handler of handlers) server.on('request', handler)
    delete server[kInstalled]
    done()
  })

  function onRequest (this: unknown, req: IncomingMessage, res: ServerResponse): void {
    if (isWebSocketUpgrade(req.headers.upgrade)) {
      const err = new FST_WS_GATE_BAD_REQUEST('Missing or invalid Connection header: expected "upgrade"')
      fastify.log.debug({ statusCode: 400, reason: err.message }, 'malformed WebSocket upgrade request')
      const body = errorBody(400, err.message, err.code)
      res.writeHead(400, { 'Content-Type': JSON_TYPE, 'Content-Length': body.length, Connection: 'close' }).end(body)
      return
    }
    for (const handler of handlers) handler.call(this, req, res)
  }

  function onUpgrade (req: IncomingMessage, socket: GateSocket, head: Buffer): void {
    const checked = checkUpgrade(req)
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
    const upgrade = new Upgrade(req.url as string, checked, head, gate)
    socket[kUpgrade] = upgrade
    inflight++
    relay.emit('upgrade', req, socket, head)
    // Answered already, or in a handshake handler (its route is known), where
    // the engine watches the socket while the decision is pending and
    // releases the count if the client leaves.
    if (!upgrade.counted || upgrade.route !== null) return
    // Fastify answered at once, without hooks (its own 503 once close() has
    // begun, before our preClose ran): nothing else will close the socket.
    if ((socket as Socket).bytesWritten > 0) {
      release(upgrade)
      publish(upgrade, 'rejected', 503)
      closeAfter(socket, undefined, limits.timeout)
      return
    }
    hold(upgrade, socket)
  }
  // An upgrade still counted when the gate hands it on (to async hooks, to
  // the app's error handler, to ws verifying the client): its socket may
  // close first. Most upgrades are answered before the gate lets go, so
  // their sockets get no listener of ours: a 'close' listener on every
  // upgrade cost about 1% of an accepted handshake's CPU time and 150 B per
  // accepted connection (docs/benchmarks.md).
  function hold (upgrade: Upgrade, socket: GateSocket): void {
    // Handed on twice (async hooks, then ws verifying the client): one listener.
    if (upgrade.counted && !socket.listeners('close').includes(onCountedClose)) socket.on('close', onCountedClose)
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
    // @fastify/websocket's injectWS() upgrades without passing our listener.
    const upgrade = upgradeOf(req)
    if (upgrade === undefined) return
    // The socket lives as long as the connection; what the gate knew of its
    // upgrade need not (nothing reads it after the 101).
    ;(req.socket as GateSocket)[kUpgrade] = undefined
    release(upgrade)
    // A route without handshake: its 101 is its outcome (the engine reported the others).
    publish(upgrade, 'accepted', 101)
    const headers = upgrade.acceptedHeaders
    if (headers !== undefined) for (let i = 0; i < headers.length; i++) lines.push(`${headers[i][0]}: ${headers[i][1]}`)
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
    guard(request.raw.socket, limits.timeout)
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

  // The gate's own answer to an upgrade, outside the engine.
  function deny (request: FastifyRequest, reply: FastifyReply, err: Error & { statusCode: number, code: string }, extra: HeaderPairs = []): void {
    reply.hijack()
    const upgrade = upgradeOf(request.raw) as Upgrade
    release(upgrade)
    upgrade.route = request.routeOptions.url as string
    publish(upgrade, 'rejected', err.statusCode)
    sendError(request.raw.socket, err, extra, limits)
  }

  fastify.addHook('onRoute', (route) => {
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
    // Without a handshake or an origin check, a WebSocket route is @fastify/websocket's own.
    if (handshake === undefined && originCheck === null) return
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
      if (handshake === undefined) return next.call(this, request, reply)
      upgrade.route = pattern ??= request.routeOptions.url as string
      upgrade.handle(this, next, request, reply)
      const engine = new Handshake(request.raw.socket, upgrade.offered, upgrade, settings, closesWithFrame(via, request.headers))
      if (drivesEngine) (handshake as unknown as (request: FastifyRequest, gate: Handshake) => void).call(this, request, engine)
      else runHandshake(this, handshake, engine, request)
    } as RouteOptions['handler']
  })
}

// What every Upgrade needs of the plugin.
interface GateParts {
  release: (upgrade: Upgrade) => void
  hold: (upgrade: Upgrade, socket: GateSocket) => void
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
  route: string | null = null
  readonly started = started()
  reported = false
  /** Set when the handshake is accepted (or refused with a close frame): what goes into the 101. */
  acceptedProtocol: string | undefined = undefined
  acceptedHeaders: HeaderPairs | undefined = undefined
  readonly url: string
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

  constructor (url: string, offered: string[], head: Buffer, gate: GateParts) {
    this.url = url
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
    this.#next.call(this.#instance, this.#request, this.#reply)
    this.#gate.hold(this, this.#request.raw.socket)
  }

  // The 101 goes out as for an accept, but straight from ws, so that the
  // route's handler (behind @fastify/websocket's) never runs.
  refuse ({ protocol, headers, code, reason }: Refusal): void {
    this.acceptedProtocol = protocol
    this.acceptedHeaders = headers
    this.#reply.hijack()
    const raw = this.#request.raw
    this.#gate.wss.handleUpgrade(raw, raw.socket, this.head, (ws) => {
      ws.close(code, reason)
      // Like a denial, a refusal must be over within denialTimeout, even with
      // a client that never answers the close frame.
      guard(raw.socket, this.#gate.limits.timeout)
    })
    this.#gate.hold(this, raw.socket)
  }

  error (err: unknown): void {
    this.#reply.send(err instanceof Error ? err : new FST_WS_GATE_NON_ERROR_THROWN(describe(err)))
    this.#gate.hold(this, this.#request.raw.socket)
  }

  takeover (): void {
    this.#reply.hijack()
    this.#gate.release(this)
  }

  settled (state: HandshakeState, status: number | undefined): void {
    if (state === 'gone') this.#gate.release(this)
    publishSettled(this, state, status)
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
