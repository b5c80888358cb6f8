// Runs an external client (curl, python3, nginx) with a hard time bound and
// collects its exit code and output.
import { spawn } from 'node:child_process'

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: Buffer
  stderr: string
}

export function run (command: string, args: string[], timeoutMs = 20_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    let stderr = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk: string) => { stderr += chunk })
    child.on('error', (err) => { clearTimeout(timer); reject(err) })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout: Buffer.concat(out), stderr })
    })
  })
}

/** The Python with Debian's python3-websockets (not a pyenv python3 that may come first on PATH). */
export const PYTHON = process.env.E2E_PYTHON ?? '/usr/bin/python3'
export const CHROMIUM = process.env.E2E_CHROMIUM ?? '/usr/bin/chromium'
export const NGINX = process.env.E2E_NGINX ?? '/usr/sbin/nginx'
export const CURL = process.env.E2E_CURL ?? 'curl'
