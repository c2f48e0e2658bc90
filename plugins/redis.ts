// The Redis connections: one to publish and read history, one to subscribe; to one Redis
// or to a Redis Cluster (found at connect, or set by REDIS_MODE), where the subscriber
// keeps one sharded subscription connection per master. Created here rather than through
// @fastify/redis, whose registration waits for Redis and so would hang the start while
// Redis is unreachable (SPEC: start anyway, degraded).
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import { splitList } from '../src/config.js'

type Client = Redis | Cluster

declare module 'fastify' {
  interface FastifyInstance {
    /** null in single-instance mode (no REDIS_URL). */
    redis: { pub: Client, sub: Client, mode: 'standalone' | 'cluster', nodes: () => number } | null
    isRedisConnected: () => boolean
  }
}

export const SINGLE_MODE_WARNING = 'Redis not available - SSE will work in single-instance mode only'

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

function clientOptions (role: 'publisher' | 'subscriber'): RedisOptions {
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
  if (role === 'publisher') {
    // A frozen Redis must not hang publishers; a subscriber just waits for messages.
    options.commandTimeout = 2000
    // No auto-pipelining: the bus already sends a turn's publishes as one script call,
    // and the extra Pipeline per turn cost ~13 us of CPU per POST /notify.
  }
  return options
}

/** "host:port" seeds: the URL's own, then REDIS_CLUSTER_NODES. */
export function clusterSeeds (url: string, extra: string): Array<{ host: string, port: number }> {
  const u = new URL(url)
  const seeds = [{ host: u.hostname, port: Number(u.port === '' ? 6379 : u.port) }]
  for (const node of splitList(extra)) {
    const at = node.lastIndexOf(':')
    const port = Number(node.slice(at + 1))
    if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`REDIS_CLUSTER_NODES: "${node}" is not host:port`)
    seeds.push({ host: node.slice(0, at).replace(/^\[|\]$/g, ''), port })
  }
  return seeds
}

function createCluster (url: string, extra: string, role: 'publisher' | 'subscriber', log: FastifyBaseLogger): Cluster {
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
    // A failover takes a few seconds: keep following the redirections that long.
    retryDelayOnFailover: 300,
    retryDelayOnClusterDown: 300,
    maxRedirections: 16,
    ...(u.protocol === 'rediss:' && { dnsLookup: (address: string, callback: (err: Error | null, address: string) => void) => callback(null, address) })
  }
  return watchOutages(new Cluster(clusterSeeds(url, extra), options), role, log)
}

function createClient (url: string, role: 'publisher' | 'subscriber', log: FastifyBaseLogger): Redis {
  return watchOutages(new Redis(url, clientOptions(role)), role, log)
}

function watchOutages<T extends Client> (client: T, role: string, log: FastifyBaseLogger): T {
  // 'error' fires on every retry: log the first of an outage and its end, nothing between.
  let down = false
  client.on('error', (err: Error) => {
    if (down) return
    down = true
    log.warn({ role, err: err.message }, 'Redis connection lost; retrying in the background')
  })
  client.on('ready', () => {
    if (!down) return
    down = false
    log.info({ role }, 'Redis connection restored')
  })
  return client
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

async function redis (fastify: FastifyInstance): Promise<void> {
  const url = fastify.config.REDIS_URL
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
  if (mode === 'standalone') {
    pub = createClient(url, 'publisher', fastify.log)
    sub = createClient(url, 'subscriber', fastify.log)
    await Promise.all([connectWithin(pub, timeout), connectWithin(sub, timeout)])
    // auto: a Redis Cluster node says cluster_enabled:1 (one unreachable at start is taken
    // for one Redis: set REDIS_MODE=cluster or REDIS_CLUSTER_NODES to be sure).
    if (cfg.REDIS_MODE === 'auto' && pub.status === 'ready' && /cluster_enabled:1/.test(await pub.info('cluster').catch(() => ''))) {
      pub.disconnect()
      sub.disconnect()
      mode = 'cluster'
    }
  }
  if (mode === 'cluster') {
    pub = createCluster(url, cfg.REDIS_CLUSTER_NODES, 'publisher', fastify.log)
    sub = createCluster(url, cfg.REDIS_CLUSTER_NODES, 'subscriber', fastify.log)
    await Promise.all([connectWithin(pub, timeout), connectWithin(sub, timeout)])
  }
  pub = pub!
  sub = sub!
  const nodes = (): number => pub instanceof Cluster ? pub.nodes('master').length : (pub.status === 'ready' ? 1 : 0)
  if (pub.status !== 'ready' || sub.status !== 'ready') {
    fastify.log.warn({ redis: redactUrl(url), mode }, 'Redis unreachable at start: degraded, delivering on this instance only until it connects')
  } else {
    fastify.log.info({ redis: redactUrl(url), mode, masters: nodes() }, `Redis connected (${mode}): cluster-wide delivery`)
  }
  fastify.decorate('redis', { pub, sub, mode, nodes })
  fastify.decorate('isRedisConnected', () => pub.status === 'ready' && sub.status === 'ready')
  fastify.addHook('onClose', async () => {
    await Promise.all([quit(pub), quit(sub)])
  })
}

export default fp(redis, { name: 'redis', fastify: '5.x', dependencies: ['config'] })
