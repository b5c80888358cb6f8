// asgi(app): Fastify route options whose handshake and connection are driven
// by an ASGI application, through the same engine as accept()/reject().
import type { FastifyRequest } from 'fastify'
import type { WebSocket } from 'ws'
import { FST_WS_GATE_INVALID_OPTION } from '../errors.js'
import type { Handshake } from '../core/handshake.js'
import { kDrivesEngine } from '../fastify/driver.js'
import type { HandshakeHandler } from '../fastify/types.js'
import { buildScope } from './scope.js'
import { AsgiSession } from './session.js'
import type { AsgiApp } from './types.js'

const kSession = Symbol('fastify-ws-gate.asgi-session')

interface SessionRequest extends FastifyRequest {
  [kSession]?: AsgiSession
}

export interface AsgiOptions {
  /** Overrides the plugin's handshakeTimeout for this route, in milliseconds. */
  handshakeTimeout?: number
  /** The scope's `root_path`: where the application is mounted. @default '' */
  rootPath?: string
}

/** What asgi(app) returns, for an ASGI callable `app`: spread it into `fastify.route({ method, url, ...asgi(app) })` or pass it to `fastify.get(url, asgi(app))`. */
export interface AsgiRouteOptions {
  websocket: true
  handshake: HandshakeHandler
  handshakeTimeout?: number
  handler: (socket: WebSocket, request: FastifyRequest) => void
}

export function asgi (app: AsgiApp, options: AsgiOptions = {}): AsgiRouteOptions {
  if (typeof app !== 'function') throw new FST_WS_GATE_INVALID_OPTION('of asgi()', 'the application must be an ASGI callable (scope, receive, send)')
  const { rootPath = '', handshakeTimeout } = options
  if (typeof rootPath !== 'string') throw new FST_WS_GATE_INVALID_OPTION('rootPath of asgi()', 'must be a string')

  function asgiHandshake (request: SessionRequest, handshake: Handshake): void {
    const session = new AsgiSession(handshake, request.log)
    request[kSession] = session
    handshake.watch()
    session.run(app, buildScope(request.raw, handshake.protocols, rootPath))
  }

  const route: AsgiRouteOptions = {
    websocket: true,
    handshake: Object.assign(asgiHandshake, { [kDrivesEngine]: true }) as unknown as HandshakeHandler,
    handler (socket, request) {
      (request as SessionRequest)[kSession]?.connected(socket)
    }
  }
  if (handshakeTimeout !== undefined) route.handshakeTimeout = handshakeTimeout
  return route
}
