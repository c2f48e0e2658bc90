// A redis-server of the test's own, on a free port, that a test can stop, restart or freeze.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  server.close()
  await once(server, 'close')
  return port
}

export class TestRedis {
  readonly port: number
  private readonly args: string[]
  private child: ChildProcess | null = null

  private constructor (port: number, args: string[] = []) {
    this.port = port
    this.args = args
  }

  /** A handle on `port` with no server yet: `restart()` starts it there. */
  static at (port: number): TestRedis {
    return new TestRedis(port)
  }

  /** `args` are extra redis-server options (a password, ACL users, TLS). */
  static async start (args: string[] = []): Promise<TestRedis> {
    const redis = new TestRedis(await freePort(), args)
    await redis.restart()
    return redis
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async restart (): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.args], { stdio: ['ignore', 'pipe', 'inherit'] })
    this.child = child
    let out = ''
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('Ready to accept connections')) resolve()
      })
      child.once('exit', code => reject(new Error(`redis-server exited with ${code}: ${out}`)))
    })
    child.stdout!.resume()
  }

  /** Stops Redis; everything in it is gone (no persistence), as after a crash. */
  async stop (): Promise<void> {
    const child = this.child
    if (child === null || child.exitCode !== null) return
    this.child = null
    child.kill('SIGKILL')
    await once(child, 'exit')
  }

  pause (): void {
    this.child?.kill('SIGSTOP')
  }

  resume (): void {
    this.child?.kill('SIGCONT')
  }
}
