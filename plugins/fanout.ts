// The fan-out of this instance: the hub (local clients), the bus (cluster link), the
// heartbeat timer, and the end of open streams at shutdown.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Bus } from '../src/bus/bus.js'
import { LocalBus } from '../src/bus/local-bus.js'
import { encodeHeartbeat } from '../src/frame.js'
import { Hub } from '../src/hub.js'
import { RedisBus } from '../src/bus/redis-bus.js'

declare module 'fastify' {
  interface FastifyInstance {
    hub: Hub
    bus: Bus
  }
}

async function fanout (fastify: FastifyInstance): Promise<void> {
  const cfg = fastify.config
  const hub = new Hub({ bufferBytes: cfg.CLIENT_BUFFER_BYTES })
  const deliver = hub.deliver.bind(hub)
  let bus: Bus
  if (fastify.redis === null) {
    bus = new LocalBus({ historySize: cfg.HISTORY_SIZE, historyTtlMs: cfg.HISTORY_TTL_MS, deliver })
  } else {
    bus = new RedisBus({
      pub: fastify.redis.pub,
      sub: fastify.redis.sub,
      prefix: cfg.REDIS_PREFIX,
      instanceId: fastify.instanceId,
      outboxLimit: cfg.OUTBOX_MAX_EVENTS,
      historySize: cfg.HISTORY_SIZE,
      historyTtlMs: cfg.HISTORY_TTL_MS,
      rejectWhenDegraded: cfg.PUBLISH_WHEN_DEGRADED === 'reject',
      deliver,
      wants: topics => hub.wants(topics),
      topics: () => hub.topics(),
      onGap: () => {
        fastify.log.warn('Redis outage outlasted the history: ending streams so clients resume and get a reset')
        hub.closeAll()
      },
      onError: (err, what) => fastify.log.warn({ err: err.message }, `Redis ${what} failed`)
    })
  }
  const heartbeat = encodeHeartbeat(cfg.HEARTBEAT_EVENT)
  const timer = setInterval(() => hub.heartbeat(heartbeat), cfg.HEARTBEAT_INTERVAL_MS).unref()

  fastify.decorate('hub', hub)
  fastify.decorate('bus', bus)
  // Streams never end by themselves: end them first, or close() waits forever.
  fastify.addHook('preClose', async () => {
    clearInterval(timer)
    hub.closeAll()
  })
  fastify.addHook('onClose', async () => {
    await bus.close()
  })
}

export default fp(fanout, { name: 'fanout', fastify: '5.x', dependencies: ['config', 'redis'] })
