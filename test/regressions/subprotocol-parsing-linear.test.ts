// Issue 17, item 3: a Sec-WebSocket-Protocol header with a few thousand
// distinct tokens cost 10-17 ms of CPU per upgrade, before routing: the
// check for duplicates searched the list parsed so far for every token. It
// is linear now. Benchmarks are not tests: this counts the work (elements
// searched by Array.prototype.includes) instead of timing it; the figures
// are in docs/security.md.
import t from 'tap'
import { parseProtocols } from '../../lib/core/headers.js'
import { connectWs, opened, start } from '../helpers.js'
import { accept } from '../../lib/index.js'

function searched (run: () => void): number {
  const includes = Array.prototype.includes
  let elements = 0
  // eslint-disable-next-line no-extend-native -- counting, for this test only; restored below
  Array.prototype.includes = function (this: unknown[], ...args: [unknown, number?]) {
    elements += this.length
    return includes.apply(this, args)
  }
  try {
    run()
  } finally {
    // eslint-disable-next-line no-extend-native
    Array.prototype.includes = includes
  }
  return elements
}

t.test('duplicates are found without searching the list for each token', async (t) => {
  const tokens = Array.from({ length: 3000 }, (_, i) => `p${i}`)
  let parsed: string[] | null = null
  const work = searched(() => { parsed = parseProtocols(tokens.join(', ')) })
  t.strictSame(parsed, tokens)
  t.ok(work <= 8 * 8, `elements searched: ${work} (the quadratic parser searched ${3000 * 2999 / 2})`)
  t.equal(parseProtocols([...tokens, 'p1500'].join(',')), null, 'a duplicate far down the list is still found')
  t.equal(parseProtocols('a, b, a'), null, 'and in a short list')
  t.strictSame(parseProtocols('a, b'), ['a', 'b'])
})

t.test('a handshake offering 2,000 subprotocols completes, with the one the handler picks', async (t) => {
  const offered = Array.from({ length: 2000 }, (_, i) => `v${i}`)
  let seen = 0
  const { port } = await start(t, (app) => {
    app.get('/ws', { websocket: true, handshake: (_request, { protocols }) => { seen = protocols.length; return accept({ protocol: 'v1999' }) } }, () => {})
  })
  const ok = opened(await connectWs(port, '/ws', { protocols: offered }))
  t.equal(ok.protocol, 'v1999')
  t.equal(seen, 2000)
  ok.ws.close()
})
