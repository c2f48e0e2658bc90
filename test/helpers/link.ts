// A TCP link between one instance and Redis that a test can cut and restore, to take one
// instance off Redis while the others stay on it.
import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import type { Test } from 'tap'
import { startInstance, type Instance } from './instance.js'
import { poll, type TestCluster } from './redis-cluster.js'
import { freePort, TestRedis } from './redis.js'

export class Link {
  readonly port: number
  private readonly target: number
  private server: Server | null = null
  private readonly sockets = new Set<Socket>()
  /** Set: the next thing Redis answers closes that connection instead of reaching the client (a command ran; its reply is lost). */
  loseNextReply = false
  /** Set: the next thing the client sends closes that connection instead of reaching Redis (a command that never ran). */
  loseNextCommand = false
  /** Set: the reply to the next command the client sends containing this text closes that connection instead (that command ran; its reply is lost). */
  loseReplyTo: string | null = null
  /** Every reply reaches the client this much later (a distant Redis). */
  delayMs = 0

  private constructor (port: number, target: number) {
    this.port = port
    this.target = target
  }

  static async open (targetPort: number): Promise<Link> {
    const link = new Link(await freePort(), targetPort)
    await link.restore()
    return link
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async restore (): Promise<void> {
    const server = createServer(downstream => {
      const upstream = connect(this.target, '127.0.0.1')
      this.sockets.add(downstream)
      this.sockets.add(upstream)
      let loseReply = false
      downstream.on('data', (chunk: Buffer) => {
        if (this.loseNextCommand) {
          this.loseNextCommand = false
          return drop()
        }
        if (this.loseReplyTo !== null && chunk.includes(this.loseReplyTo)) {
          this.loseReplyTo = null
          loseReply = true
        }
        if (!upstream.write(chunk)) downstream.pause()
      })
      upstream.on('drain', () => downstream.resume())
      upstream.on('data', (chunk: Buffer) => {
        if (this.loseNextReply || loseReply) {
          this.loseNextReply = false
          return drop()
        }
        if (this.delayMs > 0) setTimeout(() => downstream.write(chunk), this.delayMs)
        else if (!downstream.write(chunk)) upstream.pause()
      })
      downstream.on('drain', () => upstream.resume())
      const drop = (): void => {
        downstream.destroy()
        upstream.destroy()
        this.sockets.delete(downstream)
        this.sockets.delete(upstream)
      }
      downstream.on('error', drop).on('close', drop)
      upstream.on('error', drop).on('close', drop)
    })
    server.listen(this.port, '127.0.0.1')
    await once(server, 'listening')
    this.server = server
  }

  /** Drops every connection and refuses new ones. */
  async cut (): Promise<void> {
    const server = this.server
    this.server = null
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
    if (server !== null) {
      server.close()
      await once(server, 'close')
    }
  }
}

/** Two instances on a redis-server of the test's own: `a` through a Link the test can cut, `b` straight. */
export async function linkedPair (t: Test, prefix: string): Promise<{ redis: TestRedis, link: Link, a: Instance, b: Instance }> {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const link = await Link.open(redis.port)
  t.teardown(() => link.cut())
  const a = await startInstance(t, { REDIS_URL: link.url, REDIS_PREFIX: prefix })
  const b = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  return { redis, link, a, b }
}

/**
 * Makes every master of `cluster` announce a Link of the test's own, so clients reach each
 * master only through its link (the cluster bus stays direct). Returns the links by the
 * masters' ports; slot lookups must use the map as created (`cluster.nodes`), since the
 * nodes now announce the links' ports.
 */
export async function linkMasters (t: Test, cluster: TestCluster): Promise<Map<number, Link>> {
  const links = new Map<number, Link>()
  for (const node of cluster.nodes.filter(n => n.role === 'master')) {
    const link = await Link.open(node.port)
    t.teardown(async () => await link.cut())
    links.set(node.port, link)
    const myself = String(await cluster.command(node.port, 'CLUSTER', 'NODES')).split('\n').find(l => l.includes('myself'))!
    await cluster.command(node.port, 'CONFIG', 'SET', 'cluster-announce-bus-port', /@(\d+)/.exec(myself)![1])
    await cluster.command(node.port, 'CONFIG', 'SET', 'cluster-announce-port', link.port)
  }
  const announced = new Set([...links.values()].map(l => l.port))
  await poll('every master announcing its link', 10000, async () => {
    for (const port of links.keys()) {
      const slots = await cluster.command(port, 'CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>
      if (!slots.every(s => announced.has(Number(s[2][1])))) return undefined
    }
    return true
  })
  return links
}
