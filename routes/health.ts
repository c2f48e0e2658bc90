// GET /health: ok, or degraded while a configured Redis is not connected.
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'

const Health = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')], { description: 'degraded: Redis is configured but this instance cannot deliver cluster-wide; it still serves its own clients' }),
  reason: Type.Optional(Type.String({ description: 'Why it is degraded' })),
  mode: Type.Union([Type.Literal('cluster'), Type.Literal('single')], { description: 'cluster: REDIS_URL is set' }),
  redis: Type.Object({
    configured: Type.Boolean(),
    connected: Type.Boolean(),
    mode: Type.Optional(Type.Union([Type.Literal('standalone'), Type.Literal('cluster'), Type.Literal('sentinel')])),
    masters: Type.Optional(Type.Integer({ description: 'The masters it sees: 1 for one Redis' }))
  }),
  instanceId: Type.String(),
  clients: Type.Integer({ description: 'Open streams on this instance' })
}, { description: 'Always 200 while the instance serves, also when degraded: it stays in the load balancer.' })

export default async function healthRoute (fastify: FastifyInstance): Promise<void> {
  const configured = fastify.redis !== null
  fastify.get('/health', {
    schema: { summary: 'Health, for load balancers and orchestrators', tags: ['operations'], response: { 200: Health } }
  }, async () => {
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
