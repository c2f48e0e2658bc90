// GET /metrics: Prometheus text format.
import type { FastifyInstance } from 'fastify'

export default async function metricsRoute (fastify: FastifyInstance): Promise<void> {
  fastify.get('/metrics', async (_request, reply) => {
    const { registry } = fastify.metrics
    return reply.type(registry.contentType).send(await registry.metrics())
  })
}
