// GET /metrics: Prometheus text format.
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'

export default async function metricsRoute (fastify: FastifyInstance): Promise<void> {
  const { registry } = fastify.metrics
  const schema = {
    summary: 'Prometheus metrics',
    tags: ['operations'],
    response: { 200: { description: 'Prometheus text format: sse_* (clients, events, Redis, refusals), http_* and Node\'s process metrics', content: { [registry.contentType]: { schema: Type.String() } } } }
  }
  fastify.get('/metrics', { schema }, async (_request, reply) => {
    return reply.type(registry.contentType).send(await registry.metrics())
  })
}
