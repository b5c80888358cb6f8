// Recipe: a cookie session on WebSocket upgrades with @fastify/cookie.
// POST /login sets a signed session cookie; the upgrade to /chat reads it
// (browsers send cookies with the handshake), and the 101 refreshes it.
// Cookie authentication needs an Origin check: WebSockets are not covered by
// CORS, so any page could otherwise open one with the user's cookies.
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifyWsGate, { accept, reject } from 'fastify-ws-gate'

// Add `secure: true` when served over HTTPS.
const SESSION_COOKIE = { path: '/', httpOnly: true, sameSite: 'lax', maxAge: 3600 }

export async function build ({
  secret = 'change-me-to-a-long-random-secret',
  allowedOrigins = ['http://127.0.0.1:3000'],
  logger = false
} = {}) {
  const app = Fastify({ logger })
  await app.register(fastifyWsGate)
  await app.register(fastifyCookie, { secret })
  app.decorateRequest('user', null)

  // Plain HTTP: reply.setCookie() works here as usual.
  app.post('/login', async (request, reply) => {
    const user = request.body?.user // check a password here
    if (typeof user !== 'string' || !/^\w+$/.test(user)) return reply.code(400).send({ error: 'user required' })
    reply.setCookie('session', user, { ...SESSION_COOKIE, signed: true })
    return { user }
  })

  app.get('/chat', {
    websocket: true,
    allowedOrigins,
    handshake: (request) => {
      const cookie = request.cookies.session
      const session = cookie === undefined ? undefined : request.unsignCookie(cookie)
      if (!session?.valid) {
        // A 401 must carry WWW-Authenticate (RFC 9110); cookies have no standard scheme.
        return reject(401, 'Log in first', { headers: { 'WWW-Authenticate': 'Cookie realm="chat"' } })
      }
      request.user = session.value
      // The 101 is written by ws, not through reply: reply.setCookie() would be
      // lost. Serialise the cookie yourself (here: a sliding expiry).
      const refreshed = app.serializeCookie('session', request.signCookie(session.value), SESSION_COOKIE)
      return accept({ headers: { 'Set-Cookie': refreshed } })
    }
  }, (socket, request) => {
    socket.send(`hello ${request.user}`)
  })
  return app
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3000)
  const app = await build({ allowedOrigins: [`http://127.0.0.1:${port}`], logger: { level: 'warn' } })
  await app.listen({ port, host: '127.0.0.1' })
  const base = `127.0.0.1:${app.server.address().port}`
  const upgrade = "-H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='"
  console.log(`
Cookie recipe on ws://${base}/chat

  log in, keep the cookie:      curl -i -c /tmp/jar -H 'Content-Type: application/json' -d '{"user":"alice"}' http://${base}/login
  101 with a fresh Set-Cookie:  curl -i -N --max-time 2 -b /tmp/jar ${upgrade} http://${base}/chat
  no cookie, 401:               curl -i ${upgrade} http://${base}/chat
  another site's page, 403:     curl -i -b /tmp/jar -H 'Origin: https://evil.example' ${upgrade} http://${base}/chat
`)
}
