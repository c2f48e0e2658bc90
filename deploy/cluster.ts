// npm run cluster [-- --instances 3]: on this machine, a Redis (REDIS_URL, or a
// redis-server of its own on a free port), N instances on free ports, and
// deploy/nginx.conf in front of them on PORT (3000). Logs are prefixed per process;
// Ctrl-C (SIGINT) or SIGTERM stops everything it started, and nothing else.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, fstatSync, openSync, readSync, rmSync } from 'node:fs'
import { mkdtemp, readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { findNginx, NGINX_CONF, renderNginxConf, startNginx } from './local-nginx.js'

const root = fileURLToPath(new URL('../', import.meta.url))
const tsxLoader = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href

interface Started { name: string, child: ChildProcess, url: string }
const started: Started[] = []
let stopping = false

async function freePort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

function prefix (name: string, stream: Readable): void {
  createInterface({ input: stream }).on('line', line => console.log(`[${name}] ${line}`))
}

/** Prints the lines nginx appends to its access log, as [nginx]. */
function followAccessLog (file: string): void {
  let offset = 0
  let partial = ''
  const timer = setInterval(() => {
    let chunk: Buffer
    try {
      const fd = openSync(file, 'r')
      try {
        chunk = Buffer.alloc(Math.max(0, fstatSync(fd).size - offset))
        offset += readSync(fd, chunk, 0, chunk.length, offset)
      } finally {
        closeSync(fd)
      }
    } catch {
      return
    }
    const lines = (partial + chunk.toString()).split('\n')
    partial = lines.pop()!
    for (const line of lines) console.log(`[nginx] ${line}`)
  }, 250)
  timer.unref()
}

function alive (child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null
}

/** Resolves once the child printed `ready`, rejects if it exits or takes more than 20 s. */
async function waitForLine (name: string, child: ChildProcess, ready: string): Promise<void> {
  let out = ''
  const onData = (chunk: Buffer): void => { out += chunk.toString() }
  child.stdout!.on('data', onData)
  const deadline = Date.now() + 20_000
  try {
    while (!out.includes(ready)) {
      if (!alive(child)) throw new Error(`[${name}] exited (${child.exitCode ?? child.signalCode}) before it was ready`)
      if (Date.now() > deadline) throw new Error(`[${name}] did not print "${ready}" within 20 s`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  } finally {
    child.stdout!.off('data', onData)
  }
}

// Its own process group: a Ctrl-C in the terminal reaches this script only, which then
// stops the children in order (nginx, the instances, Redis).
function run (name: string, command: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  prefix(name, child.stdout!)
  prefix(name, child.stderr!)
  child.on('exit', (code, signal) => { if (!stopping) console.log(`[${name}] exited (${signal ?? code})`) })
  return child
}

async function stop (entry: Started): Promise<void> {
  const { child } = entry
  if (!alive(child)) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  await exited
  clearTimeout(timer)
}

async function stopAll (): Promise<void> {
  stopping = true
  for (const entry of [...started].reverse()) await stop(entry)
}

// A crash of this script takes its children with it.
process.on('exit', () => { for (const { child } of started) if (alive(child)) child.kill('SIGKILL') })

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { instances: { type: 'string', default: '3' } } })
  const count = Number(values.instances)
  if (!Number.isInteger(count) || count < 1 || count > 26) throw new Error(`--instances must be 1 to 26, got ${values.instances}`)
  const port = Number(process.env.PORT ?? 3000)
  const nginxBin = findNginx()
  if (nginxBin === undefined) throw new Error('nginx is not installed (not on the PATH nor in /usr/sbin): apt-get install nginx')

  let redisUrl = process.env.REDIS_URL ?? ''
  if (redisUrl === '') {
    const redisPort = await freePort()
    const child = run('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'])
    redisUrl = `redis://127.0.0.1:${redisPort}`
    started.push({ name: 'redis', child, url: redisUrl })
    await waitForLine('redis', child, 'Ready to accept connections')
  }

  const instances: Started[] = []
  for (let i = 0; i < count; i++) {
    const name = String.fromCharCode(97 + i)
    const instancePort = await freePort()
    const child = run(name, process.execPath, ['--import', tsxLoader, join(root, 'server.ts')], {
      PORT: String(instancePort), HOST: '127.0.0.1', REDIS_URL: redisUrl, TRUST_PROXY: 'loopback'
    })
    const entry = { name, child, url: `http://127.0.0.1:${instancePort}` }
    started.push(entry)
    instances.push(entry)
  }
  await Promise.all(instances.map(async ({ name, child }) => await waitForLine(name, child, 'Server listening')))

  const dir = await mkdtemp(join(tmpdir(), 'sse-cluster-'))
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  const conf = renderNginxConf(await readFile(NGINX_CONF, 'utf8'), {
    upstreams: instances.map(i => i.url.slice('http://'.length)), port, dir, errorLogInDir: false
  })
  const nginx = await startNginx(nginxBin, dir, conf, `http://127.0.0.1:${port}`)
  prefix('nginx', nginx.stderr!)
  followAccessLog(join(dir, 'access.log'))
  started.push({ name: 'nginx', child: nginx, url: `http://127.0.0.1:${port}` })

  for (const { name, child, url } of started) console.log(`  [${name}] ${url} (pid ${child.pid})`)
  console.log(`ready: http://localhost:${port}/ (the demo page), ${count} instance${count === 1 ? '' : 's'} behind nginx; Ctrl-C stops everything`)
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return
    console.log(`${signal}: stopping nginx, the instances and Redis`)
    stopAll().then(() => process.exit(0), () => process.exit(1))
  })
}

main().catch(async (err: Error) => {
  console.error(`cluster: ${err.message}`)
  await stopAll()
  process.exit(1)
})
