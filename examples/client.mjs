// A tiny client for the demo: opens a WebSocket and prints what it saw, the
// 101 (with its subprotocol and first message) or the HTTP denial, in full.
// Exit code 0 when the connection opened, 1 when the handshake was refused or
// failed. Usage: node examples/client.mjs <ws-url> [subprotocol ...]
import WebSocket from 'ws'

const [url, ...protocols] = process.argv.slice(2)
if (url === undefined) {
  console.error('usage: node examples/client.mjs <ws-url> [subprotocol ...]')
  process.exit(2)
}
const ws = new WebSocket(url, protocols)
ws.on('upgrade', (res) => console.log(`HTTP ${res.statusCode} ${res.statusMessage}`, res.headers))
ws.on('open', () => console.log(`open, subprotocol: ${ws.protocol || '(none)'}`))
ws.on('message', (data) => {
  console.log(`message: ${data}`)
  ws.close()
})
ws.on('unexpected-response', (_req, res) => {
  let body = ''
  res.on('data', (chunk) => { body += chunk })
  res.on('end', () => {
    console.log(`HTTP ${res.statusCode} ${res.statusMessage}`, res.headers)
    console.log(`body: ${body}`)
    process.exitCode = 1
  })
})
ws.on('error', (err) => {
  console.error(`error: ${err.message}`)
  process.exitCode = 1
})
