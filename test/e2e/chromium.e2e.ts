// Chromium (Debian's, driven by playwright-core; no browser is downloaded):
// the demo page of `npm start`, used as a person would, and what a page's
// WebSocket sees of each outcome of the e2e app. Saves a screenshot of the
// demo page to test/e2e/artifacts/demo.png (git-ignored).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import t from 'tap'
import { startApp } from './app.js'
import { CHROMIUM } from './run.js'

const ROOT = join(__dirname, '..', '..')
const ARTIFACTS = join(__dirname, 'artifacts')
const WAIT = { timeout: 15_000 }

interface Teardown { teardown (fn: () => unknown): void }

// The page's globals, as far as the functions run in the page use them (the
// project's TypeScript settings have no DOM library).
interface PageElement { textContent: string | null, classList: { contains (name: string): boolean } }
declare const document: {
  querySelectorAll (selector: string): Iterable<PageElement>
  getElementById (id: string): PageElement | null
}
declare class WebSocket {
  constructor (url: string, protocols: readonly string[])
  readonly protocol: string
  onopen: () => void
  onerror: () => void
  onmessage: (event: { data: unknown }) => void
  onclose: (event: { code: number, reason: string, wasClean: boolean }) => void
  close (code?: number): void
}

async function launch (t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // We run as root (no sandbox), headless, and talk to nothing but loopback.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  })
  t.teardown(() => browser.close())
  return browser
}

/** `npm start`'s demo on a free port, as a child process (it runs the built package). */
async function startDemo (t: Teardown): Promise<number> {
  const child = spawn(process.execPath, ['examples/demo.mjs'], {
    cwd: ROOT,
    env: { ...process.env, NODE_OPTIONS: '', PORT: '0', LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill()
    await once(child, 'exit')
  })
  let out = ''
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start: ${out}`)), 20_000)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      out += chunk
      const match = /In a browser: http:\/\/127\.0\.0\.1:(\d+)\//.exec(out)
      if (match !== null && out.includes('Ctrl+C')) {
        clearTimeout(timer)
        resolve(Number(match[1]))
      }
    })
  })
}

/** Fills the demo's form, connects, and waits until this connection has a verdict: a message, or its close. */
async function tryDemo (page: Page, choice: { token: string, room: string, protocol: string, mode: string }): Promise<{ outcome: string, log: string[] }> {
  await page.selectOption('#token', choice.token)
  await page.selectOption('#room', choice.room)
  await page.selectOption('#protocol', choice.protocol)
  await page.selectOption('#mode', choice.mode)
  await page.click('#connect')
  // The log entries of this connection: those after the last separator.
  await page.waitForFunction(() => {
    const items = [...document.querySelectorAll('#log li')]
    const last = items.map((li) => li.classList.contains('sep')).lastIndexOf(true)
    return items.slice(last + 1).some((li) => /^(close |← )/.test(li.textContent ?? ''))
  }, null, WAIT)
  return page.evaluate(() => {
    const items = [...document.querySelectorAll('#log li')]
    const last = items.map((li) => li.classList.contains('sep')).lastIndexOf(true)
    return {
      outcome: document.getElementById('outcome')?.textContent ?? '',
      log: items.slice(last + 1).map((li) => li.textContent ?? '')
    }
  })
}

t.test('the demo page in Chromium', async (t) => {
  const port = await startDemo(t)
  const browser = await launch(t)
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } })
  const response = await page.goto(`http://127.0.0.1:${port}/`)
  t.equal(response?.status(), 200)
  t.equal(await page.title(), 'fastify-ws-gate demo: what a browser sees')
  t.equal(await page.textContent('#outcome'), 'not connected')

  // The browser sends an Origin, so /rooms/:room (rejectVia 'auto') refuses with a close frame.
  const accepted = await tryDemo(page, { token: 'secret', room: 'lobby', protocol: 'chat.v2', mode: 'close-frame' })
  t.equal(accepted.outcome, 'accepted with protocol chat.v2')
  t.strictSame(accepted.log, ['open (protocol: chat.v2)', '← welcome to lobby (1 here, protocol: chat.v2)'])
  await page.fill('#message', 'hello from Chromium')
  await page.click('#send')
  await page.waitForFunction(() => [...document.querySelectorAll('#log li')].some((li) => li.textContent === '← hello from Chromium'), null, WAIT)
  t.pass('a message sent on the accepted connection comes back from the room')

  const v1 = await tryDemo(page, { token: 'secret', room: 'dev', protocol: 'chat.v1', mode: 'http' })
  t.equal(v1.outcome, 'accepted with protocol chat.v1')

  const refused = await tryDemo(page, { token: 'wrong', room: 'lobby', protocol: 'chat.v2', mode: 'close-frame' })
  t.equal(refused.outcome, 'rejected: 4401 Invalid token')
  // The handshake completed (101 with the offered chat.v2), then the close frame.
  t.strictSame(refused.log, ['open (protocol: chat.v2)', 'close 4401 Invalid token (clean: true)'])

  const missing = await tryDemo(page, { token: 'secret', room: 'kitchen', protocol: '', mode: 'close-frame' })
  t.equal(missing.outcome, 'rejected: 4404 No such room: kitchen')

  const hidden = await tryDemo(page, { token: 'wrong', room: 'lobby', protocol: 'chat.v2', mode: 'http' })
  t.equal(hidden.outcome, 'connection failed: 1006 (the browser hides the HTTP status)')
  t.strictSame(hidden.log, ['error event', 'close 1006 (clean: false)'])

  // Show the refusal a page can read, for the screenshot.
  await tryDemo(page, { token: 'wrong', room: 'lobby', protocol: 'chat.v2', mode: 'close-frame' })
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true })
})

// What a page's `new WebSocket()` reports, event by event, until its close.
interface PageEvents {
  events: string[]
  console: string[]
}

t.test('what a page\'s WebSocket sees in Chromium', async (t) => {
  const { port } = await startApp(t)
  const browser = await launch(t)
  const context = await browser.newContext()
  const page = await context.newPage()
  const messages: string[] = []
  page.on('console', (message) => messages.push(message.text()))
  await page.goto(`http://127.0.0.1:${port}/`)
  t.equal(await page.title(), 'e2e')

  async function open (path: string, protocols: string[] = []): Promise<PageEvents> {
    messages.length = 0
    const events = await page.evaluate(([url, protocols]) => new Promise<string[]>((resolve) => {
      const ws = new WebSocket(url, protocols)
      const events: string[] = []
      const timer = setTimeout(() => { events.push('gave up'); ws.close(); resolve(events) }, 10_000)
      ws.onopen = () => events.push(`open ${ws.protocol || '(none)'}`)
      ws.onerror = () => events.push('error')
      ws.onmessage = (e) => { events.push(`message ${String(e.data)}`); ws.close(1000) }
      ws.onclose = (e) => {
        clearTimeout(timer)
        events.push(`close ${e.code} ${JSON.stringify(e.reason)} clean=${e.wasClean}`)
        resolve(events)
      }
    }), [`ws://127.0.0.1:${port}${path}`, protocols] as const)
    // Console lines arrive asynchronously; give them a few turns (bounded).
    for (let i = 0; i < 20 && events.includes('error') && messages.length === 0; i++) await page.waitForTimeout(25)
    return { events, console: [...messages] }
  }

  t.test('101: open with the selected subprotocol; the 101\'s Set-Cookie is stored', async (t) => {
    const { events } = await open('/http/rooms/lobby?token=secret', ['chat.v1', 'chat.v2'])
    t.strictSame(events, ['open chat.v2', 'message welcome to lobby from a (protocol: chat.v2)', 'close 1000 "" clean=true'])
    const cookies = await context.cookies(`http://127.0.0.1:${port}/`)
    t.strictSame(cookies.map(({ name, value, httpOnly }) => ({ name, value, httpOnly })), [{ name: 'room', value: 'lobby', httpOnly: true }])
  })

  t.test('a 101 that selects none of the offered subprotocols fails the connection: 1006', async (t) => {
    const { events, console } = await open('/http/rooms/lobby?token=secret', ['chat.v1'])
    t.strictSame(events, ['error', 'close 1006 "" clean=false'])
    t.match(console.join('\n'), 'Sent non-empty \'Sec-WebSocket-Protocol\' header but no response was received')
  })

  t.test('HTTP denials: 1006, whatever the status; only the console (devtools) says more', async (t) => {
    const cases: Array<[string, string]> = [
      ['/http/rooms/lobby?token=wrong', 'HTTP Authentication failed; no valid credentials available'],
      ['/http/rooms/busy?token=secret', 'Unexpected response code: 429'],
      ['/http/rooms/kitchen?token=secret', 'Unexpected response code: 404'],
      // The gate's own answers stay HTTP on a close-frame route.
      ['/close/rooms/slow?token=secret', 'Unexpected response code: 503']
    ]
    for (const [path, said] of cases) {
      const { events, console } = await open(path)
      t.strictSame(events, ['error', 'close 1006 "" clean=false'], path)
      t.match(console.join('\n'), said, path)
    }
  })

  t.test('close-frame refusals: open (first offer), then the code and reason, cleanly', async (t) => {
    await context.addCookies([{ name: 'token', value: 'stale', url: `http://127.0.0.1:${port}/` }])
    const refused = await open('/close/rooms/lobby?token=wrong', ['chat.v1', 'chat.v2'])
    t.strictSame(refused.events, ['open chat.v1', 'close 4401 "Invalid token" clean=true'])
    // The refusal's Set-Cookie (token=; Max-Age=0) was kept on the 101, and applied.
    const cookies = await context.cookies(`http://127.0.0.1:${port}/`)
    t.strictSame(cookies.map(({ name }) => name), ['room'])
    const busy = await open('/close/rooms/busy?token=secret')
    t.strictSame(busy.events, ['open (none)', 'close 4429 "Too many connections" clean=true'])
  })

  t.test('rejectVia auto: Chromium sends an Origin, so it gets the close frame', async (t) => {
    const { events } = await open('/auto/rooms/lobby?token=wrong')
    t.strictSame(events, ['open (none)', 'close 4401 "Invalid token" clean=true'])
  })

  t.test('a page on a refused Origin gets 1006 even from a close-frame route: origin refusals stay HTTP', async (t) => {
    // http://localhost:<port> is another origin than http://127.0.0.1:<port>; the app refuses it.
    await page.goto(`http://localhost:${port}/`)
    for (const prefix of ['/close', '/auto']) {
      const { events, console } = await open(`${prefix}/rooms/lobby?token=secret`)
      t.strictSame(events, ['error', 'close 1006 "" clean=false'], prefix)
      t.match(console.join('\n'), 'Unexpected response code: 403', prefix)
    }
  })
})
