// CORS for browsers on other origins: EventSource with credentials (cookies) and fetch
// to POST /notify. The stream route passes these headers on after hijacking the reply.
import fastifyCors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { splitList } from '../src/config.js'

async function cors (fastify: FastifyInstance): Promise<void> {
  const origins = splitList(fastify.config.CORS_ORIGINS)
  if (origins.length === 0) return
  const any = origins.includes('*')
  if (any && origins.length > 1) throw new Error('CORS_ORIGINS is either * or a list of origins, not both')
  for (const origin of origins) {
    if (!any && !/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new Error(`CORS_ORIGINS: "${origin}" is not an origin like https://app.example.com (scheme, host, optional port, no path)`)
    }
  }
  await fastify.register(fastifyCors, {
    // Any origin cannot come with credentials: the browser would refuse them, and it would let every site read with the user's cookies.
    origin: any ? '*' : origins,
    credentials: !any,
    methods: ['GET', 'HEAD', 'POST'],
    allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'last-event-id', 'cache-control'],
    exposedHeaders: ['idempotent-replayed'],
    maxAge: 600
  })
}

export default fp(cors, { name: 'cors', fastify: '5.x', dependencies: ['config'] })
