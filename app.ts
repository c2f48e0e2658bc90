// buildApp(opts): one service instance. Everything comes from opts, the environment
// being only the default, so a test can build several instances in one process.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import authPlugin from './plugins/auth.js'
import configPlugin from './plugins/config.js'
import corsPlugin from './plugins/cors.js'
import docsPlugin from './plugins/docs.js'
import fanoutPlugin from './plugins/fanout.js'
import idempotencyPlugin from './plugins/idempotency.js'
import limitsPlugin from './plugins/limits.js'
import metricsPlugin from './plugins/metrics.js'
import redisPlugin from './plugins/redis.js'
import refusalsPlugin from './plugins/refusals.js'
import demoRoute from './routes/demo.js'
import healthRoute from './routes/health.js'
import metricsRoute from './routes/metrics.js'
import notifyRoute from './routes/notify.js'
import streamRoute from './routes/stream.js'
import { loadConfig } from './src/config.js'
import { logRedaction } from './src/log-redaction.js'
import { trustedProxies } from './src/trust-proxy.js'

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
  const config = loadConfig({ values: opts.config, env: opts.env })
  const app = Fastify({
    // A logger configuration of the caller's keeps the redaction.
    logger: opts.logger === false
      ? false
      : { level: config.LOG_LEVEL, ...(typeof opts.logger === 'object' ? opts.logger : {}), ...logRedaction },
    trustProxy: trustedProxies(config.TRUST_PROXY),
    // Both count until the request is fully received: a stream's open response is not affected.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    // How often Node enforces the two timeouts (its default is 30 s).
    http: { headersTimeout: config.HEADERS_TIMEOUT_MS, connectionsCheckingInterval: 1000 },
    // Unknown fields are an error, not silently dropped, and nothing is coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // plugins/refusals answers requests during close instead, after CORS and as streams to EventSource.
    return503OnClosing: false
  })
  app.decorate('instanceId', opts.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`)
  await app.register(configPlugin, { config })
  await app.register(corsPlugin)
  await app.register(refusalsPlugin)
  await app.register(redisPlugin)
  // Metrics first: the fan-out reports its timings to it.
  await app.register(metricsPlugin)
  await app.register(fanoutPlugin)
  await app.register(idempotencyPlugin)
  // Limits before auth: their onRoute hooks add onRequest hooks in this order.
  await app.register(limitsPlugin)
  await app.register(authPlugin)
  // Before the routes: it collects them as they are added.
  await app.register(docsPlugin)
  await app.register(streamRoute)
  await app.register(notifyRoute)
  await app.register(healthRoute)
  await app.register(metricsRoute)
  await app.register(demoRoute)
  return app
}
