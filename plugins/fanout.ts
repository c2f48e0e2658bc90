// The fan-out of this instance: the hub (local clients), the bus (cluster link), the
// heartbeat timer, and the end of open streams at shutdown.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Bus, BusListener } from '../src/bus/bus.js'
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
  // The hub asks the bus to subscribe to what its clients read; the bus answers through
  // the listener. Each is made knowing the other's interface only.
  const hub: Hub = new Hub({
    bufferBytes: cfg.CLIENT_BUFFER_BYTES,
    watch: log => bus.watch(log),
    unwatch: log => bus.unwatch(log),
    flushed: fastify.metrics.flushed
  })
  const listener: BusListener = {
    deliver: hub.deliver.bind(hub),
    advance: hub.advance.bind(hub),
    head: hub.head.bind(hub),
    ready: hub.ready.bind(hub),
    paced: hub.paced.bind(hub),
    lost: log => {
      fastify.log.warn({ topic: log }, 'events of a topic were missed and are no longer in history: ending its streams so clients resume and get a reset')
      hub.closeLog(log)
    }
  }
  const bus: Bus = fastify.redis === null
    ? new LocalBus({ historySize: cfg.HISTORY_SIZE, historyTtlMs: cfg.HISTORY_TTL_MS, listener })
    : new RedisBus({
      pub: fastify.redis.pub,
      sub: fastify.redis.sub,
      reader: fastify.redis.reader,
      prefix: cfg.REDIS_PREFIX,
      instanceId: fastify.instanceId,
      outboxLimit: cfg.OUTBOX_MAX_EVENTS,
      historySize: cfg.HISTORY_SIZE,
      historyTtlMs: cfg.HISTORY_TTL_MS,
      rejectWhenDegraded: cfg.PUBLISH_WHEN_DEGRADED === 'reject',
      listener,
      onError: (err, what) => fastify.log.warn({ err: err.message }, `Redis ${what} failed`),
      // One line per change: what is missing, then that it is back.
      onTrouble: reason => reason === null
        ? fastify.log.info('Redis path proven: publish script, publish and this instance\'s subscription work; cluster-wide delivery')
        : fastify.log.error({ reason }, `Redis path broken: ${reason}; delivering on this instance only`),
      answered: fastify.metrics.answered
    })
  // Connected at start: prove the path before taking requests (a few round trips), so the
  // first /health and publish already know whether cluster-wide delivery works.
  if (bus instanceof RedisBus && fastify.isRedisConnected()) await bus.prove()
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

export default fp(fanout, { name: 'fanout', fastify: '5.x', dependencies: ['config', 'redis', 'metrics'] })
