// GET /health: ok, or degraded while a configured Redis is not connected.
import type { FastifyInstance } from 'fastify'

export default async function healthRoute (fastify: FastifyInstance): Promise<void> {
  const configured = fastify.redis !== null
  fastify.get('/health', async () => {
    const connected = fastify.isRedisConnected()
    const trouble = fastify.bus.trouble
    return {
      status: trouble !== null ? 'degraded' : 'ok',
      ...(trouble !== null && { reason: trouble }),
      mode: configured ? 'cluster' : 'single',
      redis: configured
        ? { configured, connected, mode: fastify.redis!.mode, masters: fastify.redis!.nodes() }
        : { configured, connected },
      instanceId: fastify.instanceId,
      clients: fastify.hub.size
    }
  })
}
