// Real instances on real sockets, and raw SSE clients that record what they receive.
// The helpers that start something register its teardown on the test, as fastify-cli's
// build(t) does.
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import { buildApp, type AppOptions } from '../../app.js'

export interface Instance {
  app: FastifyInstance
  url: string
}

/** Builds and starts an instance; it is closed when `t` ends (closing it earlier is fine). */
export async function startInstance (t: Test, config: Record<string, unknown> = {}, logger: AppOptions['logger'] = false, instanceId?: string): Promise<Instance> {
  const app = await buildApp({
    env: false,
    logger,
    instanceId,
    // Load shedding is off unless a test turns it on: a busy CI machine must not turn
    // a test's stream into a 503.
    config: { PORT: 0, HOST: '127.0.0.1', REDIS_CONNECT_TIMEOUT_MS: 500, PRESSURE_MAX_EVENT_LOOP_DELAY_MS: 0, ...config }
  })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return { app, url: `http://127.0.0.1:${port}` }
}

export interface SseEvent {
  id?: string
  event?: string
  data: string
}

/** A raw SSE client: parses frames as a browser would, keeps every event and comment. */
export class SseClient {
  readonly events: SseEvent[] = []
  readonly comments: string[] = []
  raw = ''
  status = 0
  headers: IncomingMessage['headers'] = {}
  ended = false
  private req: ClientRequest | null = null
  private res: IncomingMessage | null = null
  private buffer = ''
  private waiters: Array<() => void> = []

  /** Opens a stream; resolves once the response headers arrived. */
  static async open (url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const client = new SseClient()
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(url, { headers: { accept: 'text/event-stream', ...headers } }, res => {
        client.res = res
        client.status = res.statusCode ?? 0
        client.headers = res.headers
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => client.onData(chunk))
        res.on('end', () => client.onEnd())
        res.on('close', () => client.onEnd())
        resolve()
      })
      req.on('error', err => { client.onEnd(); reject(err) })
      req.end()
      client.req = req
    })
    return client
  }

  get lastEventId (): string | undefined {
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i].id !== undefined) return this.events[i].id
    return undefined
  }

  /** Resolves when `predicate` holds, rejects after `ms`. */
  async until (predicate: (c: SseClient) => boolean, ms = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + ms
    while (!predicate(this)) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.events.length} events, ended=${this.ended}`)
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async untilEvents (n: number, ms = 5000): Promise<void> {
    await this.until(c => c.events.length >= n, ms, `${n} events`)
  }

  /** Stops reading without closing: the server's send buffer fills up. */
  pauseReading (): void {
    this.res?.pause()
    this.res?.socket.pause()
  }

  resumeReading (): void {
    this.res?.socket.resume()
    this.res?.resume()
  }

  close (): void {
    this.req?.destroy()
  }

  private onData (chunk: string): void {
    this.raw += chunk
    this.buffer += chunk
    let end
    while ((end = this.buffer.indexOf('\n\n')) !== -1) {
      const block = this.buffer.slice(0, end)
      this.buffer = this.buffer.slice(end + 2)
      this.parseBlock(block)
    }
    this.wake()
  }

  private parseBlock (block: string): void {
    const data: string[] = []
    const ev: SseEvent = { data: '' }
    let hasData = false
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) { this.comments.push(line.slice(1).trim()); continue }
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      let value = colon === -1 ? '' : line.slice(colon + 1)
      if (value.startsWith(' ')) value = value.slice(1)
      if (field === 'data') { data.push(value); hasData = true } else if (field === 'id') ev.id = value
      else if (field === 'event') ev.event = value
    }
    if (!hasData) return
    ev.data = data.join('\n')
    this.events.push(ev)
  }

  private onEnd (): void {
    this.ended = true
    this.wake()
  }

  private wake (): void {
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
  }
}

/** Opens a stream that is closed when `t` ends (closing it earlier is fine). */
export async function openStream (t: Test, url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const client = await SseClient.open(url, headers)
  t.teardown(() => client.close())
  return client
}

export async function notify (url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: any, headers: Headers }> {
  const res = await fetch(`${url}/notify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body)
  })
  const text = await res.text()
  let parsed: unknown = text
  try { parsed = JSON.parse(text) } catch {}
  return { status: res.status, body: parsed, headers: res.headers }
}

/**
 * Sends `request` on a connection whose earlier request (a publish, its body held back)
 * is still open when close() begins, as a keep-alive client or a proxy would; resolves
 * with the raw answer to `request` once the connection is closed. `heldHeaders` go on the
 * publish (a token, when publishing needs one).
 */
export async function requestDuringClose (app: FastifyInstance, url: string, request: string, heldHeaders: Record<string, string> = {}): Promise<string> {
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  await new Promise<void>(resolve => socket.once('connect', resolve))
  let received = ''
  socket.on('data', chunk => { received += chunk.toString() })
  const body = '{"data":"x"}'
  const extra = Object.entries(heldHeaders).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  socket.write(`POST /notify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${extra}content-length: ${body.length}\r\n\r\n${body.slice(0, 4)}`)
  await new Promise(resolve => setTimeout(resolve, 100))
  const closed = app.close()
  while (!app.refusals.closing) await new Promise(resolve => setTimeout(resolve, 10))
  socket.write(body.slice(4) + request)
  await new Promise(resolve => socket.once('close', resolve))
  await closed
  return received.slice(received.indexOf('HTTP/1.1', 1))
}
