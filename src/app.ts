// buildApp(opts): one service instance. Everything comes from opts, the environment
// being only the default, so a test can build several instances in one process.
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import authPlugin from '../plugins/auth.js'
import configPlugin from '../plugins/config.js'
import corsPlugin from '../plugins/cors.js'
import limitsPlugin, { trustedProxies } from '../plugins/limits.js'
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

/** Query parameters that carry credentials; their values never reach a log. */
const SECRET_PARAMS = new Set(['token', 'access_token', 'authorization', 'jwt'])

/** The URL with the values of credential parameters replaced (names compared decoded). */
export function redactQuery (url: string): string {
  const q = url.indexOf('?')
  if (q === -1) return url
  const params = url.slice(q + 1).split('&').map(param => {
    const eq = param.indexOf('=')
    const key = eq === -1 ? param : param.slice(0, eq)
    let name = key
    try { name = decodeURIComponent(key.replace(/\+/g, ' ')) } catch {}
    return SECRET_PARAMS.has(name.toLowerCase()) ? `${key}=[Redacted]` : param
  })
  return url.slice(0, q + 1) + params.join('&')
}

const logRedaction = {
  redact: ['req.headers.authorization', 'req.headers.cookie', 'req.query.token'],
  serializers: {
    // Fastify's own request serializer, but the URL (which may carry ?token=) redacted.
    req (req: FastifyRequest) {
      return {
        method: req.method,
        url: redactQuery(req.url),
        version: req.headers?.['accept-version'] as string | undefined,
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort
      }
    }
  }
}

export async function buildApp (opts: AppOptions = {}): Promise<FastifyInstance> {
  // Fastify wants trustProxy before the settings are read: it asks this, set below.
  let trusted: (address: string, hop: number) => boolean = () => false
  const app = Fastify({
    // A logger configuration of the caller's keeps the redaction.
    logger: opts.logger === false
      ? false
      : { level: 'info', ...(typeof opts.logger === 'object' ? opts.logger : {}), ...logRedaction },
    trustProxy: (address, hop) => trusted(address, hop),
    // How often Node enforces HEADERS_TIMEOUT_MS and REQUEST_TIMEOUT_MS (its default is 30 s).
    http: { connectionsCheckingInterval: 1000 },
    // Unknown fields are an error, not silently dropped, and nothing is coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    return503OnClosing: true
  })
  const instanceId = opts.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
  app.decorate('instanceId', instanceId)
  await app.register(configPlugin, { values: opts.config, env: opts.env })
  trusted = trustedProxies(app.config.TRUST_PROXY)
  await app.register(corsPlugin)
  await app.register(redisPlugin)
  await app.register(ssePlugin)
  await app.register(metricsPlugin)
  await app.register(authPlugin)
  await app.register(limitsPlugin)
  await app.register(streamRoute)
  await app.register(notifyRoute)
  await app.register(healthRoute)
  await app.register(metricsRoute)
  return app
}
