// Cross-site WebSocket hijacking protection: which Origin headers may open a
// WebSocket. Browsers send Origin with every WebSocket handshake and send the
// site's cookies along even when the page is another site's, so a server that
// authenticates by cookie must check where the handshake comes from.

/** '*', a list of origins ('https://app.example.com'), or a predicate. */
export type AllowedOrigins = '*' | readonly string[] | ((origin: string) => boolean)

/** Whether an Origin header value may connect; `undefined` (no header: not a browser) may. */
export type OriginCheck = (origin: string | undefined) => boolean

/** Compiles the option once; null when every origin is allowed. Throws a message string when the option is malformed. */
export function compileOrigins (allowed: unknown): OriginCheck | null {
  if (allowed === '*') return null
  if (typeof allowed === 'function') {
    const predicate = allowed as (origin: string) => unknown
    return (origin) => origin === undefined || predicate(origin) === true
  }
  if (Array.isArray(allowed) && allowed.every((origin) => typeof origin === 'string' && /^[a-z][a-z0-9+.-]*:\/\/[^/\s]+$/i.test(origin))) {
    const set = new Set(allowed.map((origin: string) => origin.toLowerCase()))
    return (origin) => origin === undefined || set.has(origin.toLowerCase())
  }
  throw new TypeError('must be \'*\', a list of origins such as \'https://app.example.com\' (scheme://host[:port], no path), or a function (origin) => boolean')
}
