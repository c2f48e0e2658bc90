// The Redis connections: one to publish and read history, one to subscribe. Created here
// rather than through @fastify/redis, whose registration waits for Redis and so would
// hang the start while Redis is unreachable (SPEC: start anyway, degraded).
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Redis, type RedisOptions } from 'ioredis'

declare module 'fastify' {
  interface FastifyInstance {
    /** null in single-instance mode (no REDIS_URL). */
    redis: { pub: Redis, sub: Redis } | null
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

function createClient (url: string, role: 'publisher' | 'subscriber', log: FastifyBaseLogger): Redis {
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
  const client = new Redis(url, options)
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

async function connectWithin (client: Redis, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<void>(resolve => { timer = setTimeout(resolve, ms) })
  await Promise.race([client.connect().catch(() => {}), deadline])
  clearTimeout(timer)
}

async function quit (client: Redis): Promise<void> {
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
  const pub = createClient(url, 'publisher', fastify.log)
  const sub = createClient(url, 'subscriber', fastify.log)
  const timeout = fastify.config.REDIS_CONNECT_TIMEOUT_MS
  await Promise.all([connectWithin(pub, timeout), connectWithin(sub, timeout)])
  if (pub.status !== 'ready' || sub.status !== 'ready') {
    fastify.log.warn({ redis: redactUrl(url) }, 'Redis unreachable at start: degraded, delivering on this instance only until it connects')
  } else {
    fastify.log.info({ redis: redactUrl(url) }, 'Redis connected: cluster mode')
  }
  fastify.decorate('redis', { pub, sub })
  fastify.decorate('isRedisConnected', () => pub.status === 'ready' && sub.status === 'ready')
  fastify.addHook('onClose', async () => {
    await Promise.all([quit(pub), quit(sub)])
  })
}

export default fp(redis, { name: 'redis', fastify: '5.x', dependencies: ['config'] })
