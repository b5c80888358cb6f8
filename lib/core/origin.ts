// Cross-site WebSocket hijacking protection: which Origin headers may open a
// WebSocket. Browsers send Origin with every WebSocket handshake and send the
// site's cookies along even when the page is another site's, so a server that
// authenticates by cookie must check where the handshake comes from.
//
// A browser sends its page's origin as the WHATWG URL standard serialises it:
// scheme and host lower-case, the host in punycode, no default port, no path.
// The configured origins are put in that form once, at registration, with the
// same parser; the header itself is only lower-cased (it is on the handshake
// path, and a browser never sends another form).

/** '*', a list of origins ('https://app.example.com'), or a predicate. */
export type AllowedOrigins = '*' | readonly string[] | ((origin: string) => boolean)

/** Whether an Origin header value may connect; `undefined` (no header: not a browser) may. */
export type OriginCheck = (origin: string | undefined) => boolean

const USAGE = 'must be \'*\', a list of origins such as \'https://app.example.com\' (scheme://host[:port], no path), or a function (origin) => boolean'

// scheme://, then no whitespace or control characters (the URL parser would
// silently strip some of them).
const SHAPE = /^[a-z][a-z0-9+.-]*:\/\/[^\s\p{Cc}]+$/iu
const ASCII = /^[\x21-\x7e]+$/

/** Compiles the option once; null when every origin is allowed. Throws a message string when the option is malformed. */
export function compileOrigins (allowed: unknown): OriginCheck | null {
  if (allowed === '*') return null
  if (typeof allowed === 'function') {
    const predicate = allowed as (origin: string) => unknown
    return (origin) => origin === undefined || predicate(origin) === true
  }
  if (!Array.isArray(allowed)) throw new TypeError(USAGE)
  const set = new Set(allowed.map(normaliseOrigin))
  return (origin) => origin === undefined || set.has(origin.toLowerCase())
}

/**
 * One configured origin in the form a browser sends it, or a TypeError that
 * says why it cannot be one:
 * - http, https, ws, wss: normalised by the WHATWG URL parser (lower-case,
 *   punycode, default port dropped, a lone trailing '/' allowed);
 * - file: refused (a file page's origin is opaque: browsers send 'null');
 * - schemes the parser does not know (app shells and extensions:
 *   capacitor://localhost, chrome-extension://<id>): ASCII only, compared as
 *   written, case-insensitively, since the browser decides their form;
 * - a path, a query, a fragment or credentials: refused.
 */
function normaliseOrigin (value: unknown): string {
  if (typeof value !== 'string') throw problem(`the list holds ${value === null ? 'null' : `a ${typeof value}`}, not a string`)
  const quoted = JSON.stringify(value)
  if (!SHAPE.test(value)) throw problem(`${quoted} is not scheme://host[:port]`)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw problem(`${quoted} is not a URL the WHATWG parser accepts`)
  }
  if (url.username !== '' || url.password !== '') throw problem(`${quoted} has credentials`)
  if (url.pathname !== '/' && url.pathname !== '') throw problem(`${quoted} has a path`)
  // Even an empty one ('https://a.example?'), which the parser would keep in the URL.
  if (/[?#]/.test(value)) throw problem(`${quoted} has a query or a fragment`)
  if (url.origin !== 'null') return url.origin
  if (url.protocol === 'file:') throw problem(`${quoted} is a file: URL, whose origin browsers send as 'null' (allow it with a function)`)
  if (url.host === '') throw problem(`${quoted} has no host`)
  if (!ASCII.test(value)) throw problem(`${quoted} has a scheme the URL parser cannot normalise, so it must be given in ASCII, as the browser sends it`)
  return `${url.protocol}//${url.host}`.toLowerCase()
}

function problem (detail: string): TypeError {
  return new TypeError(`${USAGE}; ${detail}`)
}
