// The framework's own ceiling for POST /notify: a bare Fastify route that parses the
// same JSON body (Fastify's default parser) and answers 202, with no schema, no
// publishing and no logging.
import Fastify from 'fastify'

const app = Fastify({ logger: false })

app.post('/notify', async (request, reply) => {
  const events = Array.isArray(request.body) ? request.body : [request.body]
  reply.code(202)
  return { ids: events.map(() => null), fanout: 'local' }
})
app.get('/health', async () => ({ status: 'ok' }))

await app.listen({ port: Number(process.env.PORT ?? 3003), host: process.env.HOST ?? '127.0.0.1' })
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
