// The gate's options, whatever the face: checked once at registration
// (FST_WS_GATE_INVALID_OPTION) and turned into what the request path needs.
import { FST_WS_GATE_INVALID_OPTION } from '../errors.js'
import type { DenialLimits } from './headers.js'
import { compileOrigins, type AllowedOrigins, type OriginCheck } from './origin.js'
import { checkRejectVia, type RejectVia } from './refusal.js'

/** The options every face takes (the Fastify plugin's, but for `websocket`). */
export interface GateOptions {
  handshakeTimeout?: number
  maxPendingHandshakes?: number
  allowedOrigins?: AllowedOrigins
  rejectVia?: RejectVia
  denialMaxBodySize?: number
  denialTimeout?: number
}

// setTimeout's limit: a longer delay fires at once.
const MAX_TIMEOUT = 2 ** 31 - 1

export interface GateSettings {
  handshakeTimeout: number
  maxPendingHandshakes: number
  limits: DenialLimits
  origins: OriginCheck | null
  rejectVia: RejectVia
}

/** Checks a millisecond count; returns what is wrong with it, or undefined. */
export function checkTimeout (value: unknown): string | undefined {
  return checkInteger(value, 0, MAX_TIMEOUT, 'milliseconds')
}

function checkInteger (value: unknown, min: number, max: number, unit: string): string | undefined {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    return `must be an integer number of ${unit} from ${min} to ${max}, got ${String(value)}`
  }
  return undefined
}

/** Compiles allowedOrigins, wherever it was given; the message says where. */
export function originsOption (value: unknown, fail: (problem: string) => Error): OriginCheck | null {
  try {
    return compileOrigins(value)
  } catch (err) {
    throw fail((err as Error).message)
  }
}

export function settings (options: GateOptions): GateSettings {
  const {
    handshakeTimeout = 10_000,
    maxPendingHandshakes = 10_000,
    denialMaxBodySize = 64 * 1024,
    denialTimeout = 10_000,
    allowedOrigins = '*',
    rejectVia = 'http'
  } = options
  const checks: Array<[string, string | undefined]> = [
    ['handshakeTimeout', checkTimeout(handshakeTimeout)],
    ['maxPendingHandshakes', checkInteger(maxPendingHandshakes, 1, Number.MAX_SAFE_INTEGER, 'handshakes')],
    ['denialMaxBodySize', checkInteger(denialMaxBodySize, 0, 2 ** 31, 'bytes')],
    ['denialTimeout', checkTimeout(denialTimeout)]
  ]
  for (const [name, problem] of checks) {
    if (problem !== undefined) throw new FST_WS_GATE_INVALID_OPTION(name, problem)
  }
  return {
    handshakeTimeout,
    maxPendingHandshakes,
    limits: { maxBodySize: denialMaxBodySize, timeout: denialTimeout },
    origins: originsOption(allowedOrigins, (problem) => new FST_WS_GATE_INVALID_OPTION('allowedOrigins', problem)),
    rejectVia: checkRejectVia(rejectVia, (problem) => new FST_WS_GATE_INVALID_OPTION('rejectVia', problem))
  }
}
