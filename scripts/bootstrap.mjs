// Lets `npm start` and `npm test` work on a fresh clone: installs the locked
// dependencies when they are missing. Does nothing once they are there.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

if (!existsSync(new URL('../node_modules/.package-lock.json', import.meta.url))) {
  console.error('fastify-ws-gate: installing dependencies (npm ci)...')
  const { status } = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit', shell: process.platform === 'win32' })
  if (status !== 0) process.exit(status ?? 1)
}
