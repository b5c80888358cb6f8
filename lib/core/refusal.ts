// rejectVia 'close-frame': a reject() that a browser can read. Browsers never
// show a page the status of a failed handshake (only close code 1006), so the
// handshake completes and the connection is closed at once with code
// 4000 + status and the reason, which the page does see.
import type { RejectDecision } from './decision.js'
import { isStream, prepareDenial } from './denial.js'
import { requireAscii, type DenialLimits, type HeaderPairs } from './headers.js'

/** How reject() decisions reach the client. */
export type RejectVia = 'http' | 'close-frame' | 'auto'

const REJECT_VIA: readonly RejectVia[] = ['http', 'close-frame', 'auto']

export interface Refusal {
  /** The reject() status, for logs and reports. */
  status: number
  /** The subprotocol the 101 selects: the first one offered, so that a client that offered some completes the handshake. */
  protocol: string | undefined
  /** What is left of the reject() headers once those that mean nothing on a 101 are dropped. */
  headers: HeaderPairs
  /** 4000 + status. */
  code: number
  /** The reject() reason, cut to the 123 bytes a close frame has room for. */
  reason: string
}

// RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
const MAX_REASON_BYTES = 123

/** Whether reject() decisions go out as close frames, for a request with or without an Origin header (read only for 'auto'). */
export function closesWithFrame (via: RejectVia, headers: { origin?: string }): boolean {
  return via === 'close-frame' || (via === 'auto' && headers.origin !== undefined)
}

/** Checks a rejectVia option; `fail` makes the error that says where it was given. */
export function checkRejectVia (value: unknown, fail: (problem: string) => Error): RejectVia {
  if (!REJECT_VIA.includes(value as RejectVia)) throw fail(`must be 'http', 'close-frame' or 'auto', got ${JSON.stringify(value)}`)
  return value as RejectVia
}

// Headers that describe a response body or only mean something on the status
// they came with (a challenge, a redirect, a delay): after a 101 they would
// mislead, so they are dropped. Set-Cookie, Cache-Control, X-* and the like stay.
function meansNothingOn101 (lowerName: string): boolean {
  return lowerName.startsWith('content-') || DROPPED.has(lowerName)
}
const DROPPED = new Set(['location', 'www-authenticate', 'proxy-authenticate', 'retry-after', 'allow', 'accept-ranges'])

/**
 * Validates a reject() exactly as for an HTTP denial (so a decision valid in
 * one mode is valid in the other), then turns it into a 101 and a close frame.
 * A stream body is destroyed: it will never be sent.
 */
export function prepareRefusal (decision: RejectDecision, offered: readonly string[], limits: DenialLimits): Refusal {
  const { status, headers } = prepareDenial(decision, limits)
  if (isStream(decision.body)) decision.body.destroy?.()
  return toRefusal(status, decision.reason ?? '', headers, offered)
}

/** A refusal from a status, reason and headers already validated for an HTTP denial. */
export function toRefusal (status: number, reason: string, headers: HeaderPairs, offered: readonly string[]): Refusal {
  const kept = headers.filter(([name]) => !meansNothingOn101(name.toLowerCase()))
  for (const [name, value] of kept) requireAscii(name, value)
  return { status, protocol: offered[0], headers: kept, code: 4000 + status, reason: truncateUtf8(reason, MAX_REASON_BYTES) }
}

/** The longest prefix of `text` that fits in `max` bytes of UTF-8 without splitting a character. */
export function truncateUtf8 (text: string, max: number): string {
  const bytes = Buffer.from(text)
  if (bytes.length <= max) return text
  let end = max
  // Back up over continuation bytes (10xxxxxx) to the start of the cut character.
  while ((bytes[end] & 0xc0) === 0x80) end--
  return bytes.subarray(0, end).toString()
}
