// Idempotent publishing for POST /notify: the store every instance shares (Redis when
// configured, else this instance's memory) and the logic a keyed request runs through.
// The store uses the redis plugin's publisher connection, which that plugin closes.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Idempotency } from '../src/idempotency/idempotency.js'
import { MemoryIdempotencyStore } from '../src/idempotency/memory-store.js'
import { RedisIdempotencyStore } from '../src/idempotency/redis-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    idempotency: Idempotency
  }
}

async function idempotency (fastify: FastifyInstance): Promise<void> {
  const cfg = fastify.config
  const store = fastify.redis === null
    ? new MemoryIdempotencyStore()
    : new RedisIdempotencyStore(fastify.redis.pub, cfg.REDIS_PREFIX)
  fastify.decorate('idempotency', new Idempotency({
    store,
    windowMs: cfg.IDEMPOTENCY_WINDOW_MS,
    onError: (err, what) => fastify.log.warn({ err: err.message }, `${what} failed: retries with that key will publish nothing`)
  }))
}

export default fp(idempotency, { name: 'idempotency', fastify: '5.x', dependencies: ['config', 'redis'] })
