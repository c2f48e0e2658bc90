// buildApp(opts): one service instance. Everything comes from opts, the environment
// being only the default, so a test can build several instances in one process.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import configPlugin from '../plugins/config.js'
import metricsPlugin from '../plugins/metrics.js'
import redisPlugin from '../plugins/redis.js'
import ssePlugin from '../plugins/sse.js'
import healthRoute from '../routes/health.js'
import metricsRoute from '../routes/metrics.js'
import notifyRoute from '../routes/notify.js'
import streamRoute from '../routes/stream.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** This instance's name in /health and in Redis (events it delivered itself). */
    instanceId: string
  }
}

export interface AppOptions {
  /** Settings that win over the environment (names as in .env.example). */
  config?: Record<string, unknown>
  /** Read process.env and .env (default true; tests pass false). */
  env?: boolean
  logger?: FastifyServerOptions['logger']
  instanceId?: string
}

export async function buildApp (opts: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logger ?? {
      level: 'info',
      redact: ['req.headers.authorization', 'req.headers.cookie', 'req.query.token']
    },
    // Unknown fields are an error, not silently dropped, and nothing is coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    return503OnClosing: true
  })
  const instanceId = opts.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
  app.decorate('instanceId', instanceId)
  await app.register(configPlugin, { values: opts.config, env: opts.env })
  await app.register(redisPlugin)
  await app.register(ssePlugin)
  await app.register(metricsPlugin)
  await app.register(streamRoute)
  await app.register(notifyRoute)
  await app.register(healthRoute)
  await app.register(metricsRoute)
  return app
}
