// What the attack servers (bench/attacks.mjs) add to common.mjs's IPC: memory
// without a forced GC and the peak RSS, the lines logged at error level, and
// a graceful close on request (its duration, once it settles).

/** WebSocket messages the routes' sockets received (the harness reads them with 'mem'). */
export const received = { messages: 0, bytes: 0 }

/** What every accepted socket gets: an error listener that logs at error level, and a count of its messages. */
export function watch (socket, log) {
  socket.on('error', log)
  socket.on('message', (data) => {
    received.messages++
    received.bytes += data.length
  })
}

/** Error-level log lines and errors the server saw, until the harness reads them. */
const errors = []

/** Records an error the way a log line at error level would be. */
export function logError (msg, err) {
  errors.push({ msg, code: err?.code, message: err?.message })
}

/** Fastify's logger option: level error, every line kept for the harness. */
export const errorLogger = {
  level: 'error',
  stream: {
    write (line) {
      const entry = JSON.parse(line)
      errors.push({ level: entry.level, msg: entry.msg, code: entry.err?.code ?? entry.code, message: entry.err?.message })
    }
  }
}

/** Answers the extra commands; `close` is the server's graceful shutdown. */
export function commands (close) {
  // The harness gone (killed mid-run): so is this server.
  process.on('disconnect', () => process.exit(0))
  process.on('message', async (message) => {
    if (message.cmd === 'mem') {
      const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage()
      // maxRSS is in KiB.
      process.send({ id: message.id, rss, heapUsed, external, arrayBuffers, maxRss: process.resourceUsage().maxRSS * 1024, received })
    } else if (message.cmd === 'errors') {
      process.send({ id: message.id, errors: errors.splice(0) })
    } else if (message.cmd === 'close') {
      const started = process.hrtime.bigint()
      let error
      try {
        await close()
      } catch (err) {
        error = err.message
      }
      process.send({ id: message.id, ms: Number(process.hrtime.bigint() - started) / 1e6, error })
    }
  })
}

/** How long the route behind /slow-hook keeps an upgrade in its hook (or verifyClient). */
export const SLOW_HOOK_MS = Number(process.env.SLOW_HOOK_MS ?? 500)
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
