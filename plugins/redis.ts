// The Redis connections: one to publish and read history, one to subscribe; to one Redis
// or to a Redis Cluster (found at connect, or set by REDIS_MODE), where the subscriber
// keeps one sharded subscription connection per master. Created here rather than through
// @fastify/redis, whose registration waits for Redis and so would hang the start while
// Redis is unreachable (SPEC: start anyway, degraded).
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { replyMasters, tableMasters } from '../src/cluster-slots.js'
import { splitList } from '../src/config.js'

type Client = Redis | Cluster

/** How often the cluster subscriber's slot map is checked (one CLUSTER SLOTS). */
const SLOTS_REFRESH_MS = 5000
/** How often ioredis's own refresh runs anyway, whatever the check says. */
const SLOTS_FULL_REFRESH_MS = 60_000

declare module 'fastify' {
  interface FastifyInstance {
    /** null in single-instance mode (no REDIS_URL). */
    redis: { pub: Client, sub: Client, reader: Client, mode: 'standalone' | 'cluster' | 'sentinel', nodes: () => number } | null
    isRedisConnected: () => boolean
  }
}

const SINGLE_MODE_WARNING = 'Redis not available - SSE will work in single-instance mode only'

/** The URL without its password, for logs. */
export function redactUrl (url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return '(unparsable REDIS_URL)'
  }
}

/** publisher: publishes (short timeout); subscriber: subscriptions; reader: history reads (a resume storm's big replies, off the publisher's connection). */
type Role = 'publisher' | 'subscriber' | 'reader'

function clientOptions (role: Role): RedisOptions {
  const options: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    // A command lost with its connection may or may not have run: fail it, never resend it.
    autoResendUnfulfilledCommands: false,
    autoResubscribe: false, // the bus subscribes on every 'ready', then catches up
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    retryStrategy: times => Math.min(100 * 2 ** Math.min(times, 4), 2000),
    connectionName: `sse-fanout-${role}`
  }
  // Long enough for a big history reply under a reconnect storm, short of forever.
  if (role === 'reader') options.commandTimeout = 30_000
  if (role === 'publisher') {
    // A frozen Redis must not hang publishers; a subscriber just waits for messages.
    options.commandTimeout = 2000
    // No auto-pipelining: the bus already sends a turn's publishes as one script call,
    // and the extra Pipeline per turn cost ~13 us of CPU per POST /notify.
  }
  return options
}

/** A "host:port,..." setting as nodes; a bad entry stops the start naming `name`. */
export function hostPorts (setting: string, name: string): Array<{ host: string, port: number }> {
  const nodes = []
  for (const node of splitList(setting)) {
    const at = node.lastIndexOf(':')
    const port = Number(node.slice(at + 1))
    if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${name}: "${node}" is not host:port`)
    nodes.push({ host: node.slice(0, at).replace(/^\[|\]$/g, ''), port })
  }
  return nodes
}

/** Cluster seeds: the URL's own node, then REDIS_CLUSTER_NODES. */
export function clusterSeeds (url: string, extra: string): Array<{ host: string, port: number }> {
  const u = new URL(url)
  return [{ host: u.hostname, port: Number(u.port === '' ? 6379 : u.port) }, ...hostPorts(extra, 'REDIS_CLUSTER_NODES')]
}

function createCluster (url: string, extra: string, role: Role, outage: Outage): Cluster {
  const u = new URL(url)
  const node = clientOptions(role)
  delete node.lazyConnect
  delete node.enableOfflineQueue
  delete node.retryStrategy
  // A cluster's sharded subscribers follow a failover by themselves; the bus catches up after.
  delete node.autoResubscribe
  if (u.username !== '') node.username = decodeURIComponent(u.username)
  if (u.password !== '') node.password = decodeURIComponent(u.password)
  // Managed services name their nodes by address: keep TLS checking the configured host.
  if (u.protocol === 'rediss:') node.tls = { servername: u.hostname }
  const options: ClusterOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    redisOptions: node,
    shardedSubscribers: role === 'subscriber',
    clusterRetryStrategy: times => Math.min(100 * 2 ** Math.min(times, 4), 2000),
    // A failover takes a few seconds: keep following the redirections that long. Not for
    // the publisher: ioredis retries a command whose connection closed, even one Redis ran
    // (its reply lost), and a publish run twice is an event in the log twice.
    retryDelayOnFailover: role === 'publisher' ? 0 : 300,
    retryDelayOnClusterDown: 300,
    maxRedirections: 16,
    ...(u.protocol === 'rediss:' && { dnsLookup: (address: string, callback: (err: Error | null, address: string) => void) => callback(null, address) })
  }
  return outage.watch(new Cluster(clusterSeeds(url, extra), options), role)
}

/** Sentinel: the master the sentinels name, followed through failovers; REDIS_URL's credentials and TLS. */
async function sentinelMode (fastify: FastifyInstance, sentinels: string[]): Promise<void> {
  const cfg = fastify.config
  if (cfg.REDIS_SENTINEL_NAME === '') throw new Error('REDIS_SENTINELS needs REDIS_SENTINEL_NAME (the master name the sentinels monitor)')
  const seeds = hostPorts(cfg.REDIS_SENTINELS, 'REDIS_SENTINELS')
  const u = cfg.REDIS_URL === '' ? null : new URL(cfg.REDIS_URL)
  const outage = new Outage(fastify.log)
  outage.logged = true
  const create = (role: Role): Redis => {
    const options: RedisOptions = {
      ...clientOptions(role),
      sentinels: seeds,
      name: cfg.REDIS_SENTINEL_NAME,
      // On a lost connection ioredis asks the sentinels for the master again. (Its
      // failoverDetector keeps sentinel connections that quit() leaves open.)
      ...(u !== null && u.username !== '' && { username: decodeURIComponent(u.username) }),
      ...(u !== null && u.password !== '' && { password: decodeURIComponent(u.password), sentinelPassword: decodeURIComponent(u.password) }),
      ...(u?.protocol === 'rediss:' && { tls: {}, enableTLSForSentinelMode: true })
    }
    return outage.watch(new Redis(options), role)
  }
  const pub = create('publisher')
  const sub = create('subscriber')
  const reader = create('reader')
  await Promise.all([pub, sub, reader].map(async c => await connectWithin(c, cfg.REDIS_CONNECT_TIMEOUT_MS)))
  if (pub.status !== 'ready' || sub.status !== 'ready') {
    fastify.log.warn({ sentinels, name: cfg.REDIS_SENTINEL_NAME, err: outage.lastError }, `Redis unreachable at start (${outage.lastError === '' ? 'no answer' : outage.lastError}): degraded, delivering on this instance only until it connects`)
  } else {
    outage.logged = false
    fastify.log.info({ sentinels, name: cfg.REDIS_SENTINEL_NAME }, 'Redis connected (sentinel)')
  }
  fastify.decorate('redis', { pub, sub, reader, mode: 'sentinel' as const, nodes: () => pub.status === 'ready' ? 1 : 0 })
  fastify.decorate('isRedisConnected', () => pub.status === 'ready' && sub.status === 'ready' && reader.status === 'ready')
  fastify.addHook('onClose', async () => {
    await Promise.all([quit(pub), quit(sub), quit(reader)])
  })
}

function createClient (url: string, role: Role, outage: Outage): Redis {
  return outage.watch(new Redis(url, clientOptions(role)), role)
}

/** One instance's view of its Redis outages: one log line when lost, one when back. */
class Outage {
  private readonly down = new Set<string>()
  /** Set while an outage is logged (or the start reported it). */
  logged = false
  lastError = ''
  constructor (private readonly log: FastifyBaseLogger) {}

  watch<T extends Client> (client: T, role: string): T {
    // 'error' fires on every retry: only the first of an outage is logged.
    client.on('error', (err: Error & { lastNodeError?: Error }) => {
      this.down.add(role)
      this.lastError = err.lastNodeError?.message ?? err.message
      if (this.logged) return
      this.logged = true
      this.log.warn({ err: this.lastError }, 'Redis connection lost; retrying in the background')
    })
    client.on('ready', () => {
      this.down.delete(role)
      if (!this.logged || this.down.size > 0) return
      this.logged = false
      this.log.info('Redis connection restored')
    })
    return client
  }
}

/** The first line `socket` gets after a PING (or what it got before it closed); null when nothing came within `ms`. */
async function firstReply (socket: Socket, ms: number): Promise<string | null> {
  return await new Promise(resolve => {
    let got = ''
    const done = (): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(got === '' ? null : got.split('\r\n')[0])
    }
    const timer = setTimeout(done, ms)
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('latin1')
      if (got.includes('\r\n')) done()
    })
    socket.on('error', done)
    socket.on('close', done)
  })
}

async function speaksTls (host: string, port: number, ms: number): Promise<boolean> {
  return await new Promise(resolve => {
    // Only asks whether a TLS handshake completes: nothing is sent over it.
    const socket = tlsConnect({ host, port, servername: host, rejectUnauthorized: false })
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), ms)
    socket.on('secureConnect', () => done(true))
    socket.on('error', () => done(false))
  })
}

/**
 * Why REDIS_URL's server cannot be used, when connecting failed without saying it (ioredis
 * reports a broken pipe, a reset or a timeout): protected mode answers DENIED, a plain
 * Redis behind rediss:// answers a plain PING, a TLS one behind redis:// completes a
 * handshake. null when a look at the address shows none of these.
 */
export async function diagnoseRedis (url: string, ms: number): Promise<string | null> {
  const u = new URL(url)
  const host = u.hostname.replace(/^\[|\]$/g, '')
  const port = Number(u.port === '' ? 6379 : u.port)
  const where = `${host}:${port}`
  const plain = await firstReply(netConnect({ host, port }), ms)
  if (plain?.startsWith('-DENIED') === true) {
    return `Redis at ${where} is in protected mode and refuses this instance: with protected-mode yes and no password for its default user it accepts only loopback clients. Give Redis a password with requirepass or an ACL user and put it in REDIS_URL, or set protected-mode no on a private network`
  }
  if (u.protocol === 'rediss:') {
    return plain !== null && /^[-+:$*]/.test(plain) ? `REDIS_URL is rediss:// (TLS) but ${where} speaks plain Redis, without TLS: use redis://, or the server's TLS port` : null
  }
  if (plain === null && await speaksTls(host, port, ms)) return `REDIS_URL is redis:// but ${where} speaks TLS: use rediss://`
  return null
}

/** maxmemory-policy of each master; none where CONFIG is refused (managed services). */
async function evictionPolicies (client: Client): Promise<string[]> {
  const masters = client instanceof Cluster ? client.nodes('master') : [client]
  const out: string[] = []
  for (const node of masters) {
    const reply = await node.config('GET', 'maxmemory-policy').catch(() => []) as string[]
    if (reply.length === 2) out.push(reply[1])
  }
  return out
}

async function connectWithin (client: Client, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<void>(resolve => { timer = setTimeout(resolve, ms) })
  await Promise.race([client.connect().catch(() => {}), deadline])
  clearTimeout(timer)
}

async function quit (client: Client): Promise<void> {
  if (client.status === 'ready') {
    await client.quit().catch(() => client.disconnect())
  } else {
    client.disconnect()
  }
}

/**
 * Every SLOTS_REFRESH_MS, the cluster's slot map as a node answers it over `reader` (within
 * 1 s), against the subscriber's table (src/cluster-slots.ts; its text made again after each
 * of its refreshes): ioredis's refresh, ~6 ms of CPU, runs when they differ, when the map
 * cannot be had, and every SLOTS_FULL_REFRESH_MS anyway. One check at a time.
 */
function watchSlots (subscriber: Cluster, reader: Client): NodeJS.Timeout {
  let fullRefreshAt = Date.now() + SLOTS_FULL_REFRESH_MS
  let table: string | null = null
  subscriber.on('refresh', () => { table = null })
  let checking = false
  const askSlots = async (): Promise<unknown> => {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<null>(resolve => { timer = setTimeout(() => resolve(null), 1000) })
    try {
      return await Promise.race([reader.cluster('SLOTS').catch(() => null), late])
    } finally {
      clearTimeout(timer)
    }
  }
  const check = async (): Promise<void> => {
    if (subscriber.status !== 'ready' || checking) return
    checking = true
    try {
      const due = Date.now() >= fullRefreshAt
      const map = due || reader.status !== 'ready' ? null : replyMasters(await askSlots())
      table ??= tableMasters(subscriber.slots)
      if (map !== null && map === table) return
      fullRefreshAt = Date.now() + SLOTS_FULL_REFRESH_MS
      subscriber.refreshSlotsCache()
    } finally {
      checking = false
    }
  }
  return setInterval(() => { check().catch(() => {}) }, SLOTS_REFRESH_MS).unref()
}

async function redis (fastify: FastifyInstance): Promise<void> {
  const url = fastify.config.REDIS_URL
  const sentinels = splitList(fastify.config.REDIS_SENTINELS)
  if (sentinels.length > 0) {
    await sentinelMode(fastify, sentinels)
    return
  }
  if (url === '') {
    fastify.log.warn(SINGLE_MODE_WARNING)
    fastify.decorate('redis', null)
    fastify.decorate('isRedisConnected', () => false)
    return
  }
  const cfg = fastify.config
  const timeout = cfg.REDIS_CONNECT_TIMEOUT_MS
  let mode: 'standalone' | 'cluster' = cfg.REDIS_MODE === 'cluster' || splitList(cfg.REDIS_CLUSTER_NODES).length > 0 ? 'cluster' : 'standalone'
  let pub: Client
  let sub: Client
  let reader: Client
  // The start reports its own outcome in one line: errors while connecting are not logged apart.
  const outage = new Outage(fastify.log)
  outage.logged = true
  if (mode === 'standalone') {
    pub = createClient(url, 'publisher', outage)
    sub = createClient(url, 'subscriber', outage)
    reader = createClient(url, 'reader', outage)
    await Promise.all([pub, sub, reader].map(async c => await connectWithin(c, timeout)))
    // auto: a Redis Cluster node says cluster_enabled:1 (one unreachable at start is taken
    // for one Redis: set REDIS_MODE=cluster or REDIS_CLUSTER_NODES to be sure).
    if (cfg.REDIS_MODE === 'auto' && pub.status === 'ready' && /cluster_enabled:1/.test(await pub.info('cluster').catch(() => ''))) {
      pub.disconnect()
      sub.disconnect()
      reader.disconnect()
      mode = 'cluster'
    }
  }
  if (mode === 'cluster') {
    pub = createCluster(url, cfg.REDIS_CLUSTER_NODES, 'publisher', outage)
    sub = createCluster(url, cfg.REDIS_CLUSTER_NODES, 'subscriber', outage)
    reader = createCluster(url, cfg.REDIS_CLUSTER_NODES, 'reader', outage)
    await Promise.all([pub, sub, reader].map(async c => await connectWithin(c, timeout)))
  }
  pub = pub!
  sub = sub!
  reader = reader!
  const nodes = (): number => pub instanceof Cluster ? pub.nodes('master').length : (pub.status === 'ready' ? 1 : 0)
  if (pub.status !== 'ready' || sub.status !== 'ready') {
    const why = await diagnoseRedis(url, 1000) ?? (outage.lastError === '' ? 'no answer' : outage.lastError)
    fastify.log.warn({ redis: redactUrl(url), mode, err: outage.lastError }, `Redis unreachable at start (${why}): degraded, delivering on this instance only until it connects`)
  } else {
    outage.logged = false
    fastify.log.info({ redis: redactUrl(url), mode, masters: nodes() }, `Redis connected (${mode})`)
  }
  // Once, at the first connection: a policy that can evict the history is worth one line.
  const checkEviction = (): void => {
    evictionPolicies(pub).then(policies => {
      const risky = [...new Set(policies.filter(p => p !== 'noeviction'))]
      if (risky.length > 0) {
        fastify.log.warn({ maxmemoryPolicy: risky.join(',') }, `Redis maxmemory-policy is ${risky.join(', ')}: under memory pressure Redis may evict the history (its keys expire, so volatile-* policies evict them too); resumes then get a reset. Use maxmemory-policy noeviction`)
      }
    }, () => {})
  }
  if (pub.status === 'ready') checkEviction()
  else pub.once('ready', checkEviction)
  // A moved slot's old master drops its channels and ioredis looks the slot up again;
  // asked of a node that has not heard of the move yet, it would never resubscribe. (Not
  // ioredis's slotsRefreshInterval: a refresh under way at quit() re-arms its timer, and
  // the process never exits.) Checked first against a node's map: watchSlots.
  const refresher = sub instanceof Cluster ? watchSlots(sub, reader) : undefined
  fastify.decorate('redis', { pub, sub, reader, mode, nodes })
  fastify.decorate('isRedisConnected', () => pub.status === 'ready' && sub.status === 'ready' && reader.status === 'ready')
  fastify.addHook('onClose', async () => {
    clearInterval(refresher)
    await Promise.all([quit(pub), quit(sub), quit(reader)])
  })
}

export default fp(redis, { name: 'redis', fastify: '5.x', dependencies: ['config'] })
