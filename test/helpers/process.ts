// The service as a user runs it: a child process of server.ts, configured by env.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { freePort } from './redis.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const tsxLoader = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href

export interface ServerProcess {
  child: ChildProcess
  url: string
  output: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/**
 * Starts `server.ts`; resolves once it listens (or rejects with its output). With
 * `cwd`, it runs there (to read a .env file) and PORT comes from `port`'s caller.
 */
export async function startServer (env: Record<string, string> = {}, waitForListen = true, cwd?: string, port?: number): Promise<ServerProcess> {
  const listenPort = String(port ?? env.PORT ?? await freePort())
  const baseEnv: Record<string, string | undefined> = { PATH: process.env.PATH, HOST: '127.0.0.1', LOG_LEVEL: 'info' }
  if (cwd === undefined) baseEnv.PORT = listenPort
  const child = spawn(process.execPath, ['--import', tsxLoader, join(root, 'server.ts')], {
    cwd: cwd ?? root,
    env: { ...baseEnv, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout!.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr!.on('data', (c: Buffer) => { out += c.toString() })
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }))
  if (waitForListen) {
    const deadline = Date.now() + 15000
    while (!out.includes('Server listening')) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL')
        throw new Error(`server did not start:\n${out}`)
      }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
  return { child, url: `http://127.0.0.1:${listenPort}`, output: () => out, exited }
}
