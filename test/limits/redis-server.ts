// A real Redis for the tests: Debian's redis-server (.ci/run installs it),
// started by the test on 127.0.0.1 and a free port, with no persistence (no
// RDB snapshot, no AOF, its directory a temporary one), and stopped in the
// test's teardown. It can be stopped and started again on the same port
// (empty, as a restarted Redis without persistence is), and paused (SIGSTOP:
// its connections stay open and nothing answers, as behind a partition).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const REDIS_SERVER = '/usr/bin/redis-server'

interface Teardown { teardown (fn: () => unknown): void }

export interface RedisServer {
  readonly port: number
  /** redis://127.0.0.1:<port> */
  readonly url: string
  /** Stops the server (SIGKILL if paused, else SIGTERM) and waits for it to exit. Does nothing if stopped. */
  stop (): Promise<void>
  /** Starts it again on the same port, empty. */
  start (): Promise<void>
  /** SIGSTOP: connections stay open, nothing is answered. */
  pause (): void
  /** SIGCONT: it answers what it received meanwhile. */
  resume (): void
}

// How long redis-server may take to say it is ready.
const STARTUP_TIMEOUT = 10_000

async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

// Spawns redis-server and resolves once it accepts connections; rejects with
// its output if it exits first (the port was taken) or takes too long.
async function spawnRedis (port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(REDIS_SERVER, [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--loglevel', 'notice', '--logfile', ''
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`redis-server did not start within ${STARTUP_TIMEOUT} ms:\n${output}`))
    }, STARTUP_TIMEOUT)
    const read = (chunk: Buffer): void => {
      output += chunk.toString()
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout.on('data', read)
    child.stderr.on('data', read)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`redis-server exited (${code ?? signal}):\n${output}`))
    })
  })
  // Keep draining its output, so that it never blocks on a full pipe.
  child.stdout.resume()
  child.stderr.resume()
  return child
}

/** Starts a redis-server for this test; it is stopped in teardown. */
export async function startRedis (t: Teardown): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'ws-gate-redis-'))
  let child: ChildProcess | undefined
  let paused = false
  let port = 0
  // Another process may take the free port before redis-server binds it:
  // a few tries, each on a new port.
  for (let attempt = 1; child === undefined; attempt++) {
    port = await freePort()
    try {
      child = await spawnRedis(port, dir)
    } catch (err) {
      if (attempt === 5) throw err
    }
  }
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop () {
      const running = child
      if (running === undefined) return
      child = undefined
      if (running.exitCode === null && running.signalCode === null) {
        const exited = once(running, 'exit')
        running.kill(paused ? 'SIGKILL' : 'SIGTERM')
        await exited
      }
      paused = false
    },
    async start () {
      if (child !== undefined) throw new Error('redis-server is running')
      child = await spawnRedis(port, dir)
    },
    pause () {
      child?.kill('SIGSTOP')
      paused = true
    },
    resume () {
      child?.kill('SIGCONT')
      paused = false
    }
  }
  t.teardown(async () => {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  return server
}
