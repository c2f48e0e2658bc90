// Limits that protect the instance rather than one request: rate limits per client
// address (shared through Redis when present), load shedding under event-loop or memory
// pressure, and the HTTP timeouts that end slow-loris clients. Open streams are never
// touched: only new streams and publishes are refused.
import fastifyRateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { limitsSet, Pressure, type Strain } from '../src/pressure.js'
import { AS_STREAM, documentAnswer, RETRY_AFTER } from '../src/refusal.js'

type Hook = (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>
/** The error @fastify/rate-limit throws, as errorResponseBuilder below makes it. */
type RateLimited = Error & { statusCode: number, retryAfterMs: number }
declare module 'fastify' {
  interface FastifyInstance {
    /** Whether the last sample found a PRESSURE_MAX_* limit exceeded. */
    isUnderPressure: () => boolean
  }
  interface FastifyContextConfig {
    /** Counts against RATE_LIMIT_STREAMS or RATE_LIMIT_PUBLISH per client address. */
    rateLimited?: 'streams' | 'publishes'
    /** Refused (503) while the instance is under pressure; open streams are never touched. */
    shedsLoad?: boolean
  }
}

async function limits (fastify: FastifyInstance): Promise<void> {
  const cfg = fastify.config
  // Connections that have not sent a whole request head yet. Node ends them at
  // HEADERS_TIMEOUT_MS while the server runs, but stops checking once close() begins: then
  // one that never sends (a browser's preconnect, a slow-loris) would hold close() forever.
  const unheard = new Set<Socket>()
  fastify.server.on('connection', (socket: Socket) => {
    unheard.add(socket)
    socket.once('close', () => unheard.delete(socket))
  })
  fastify.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    unheard.delete(request.socket)
    // Kept alive, it waits for its next request head (a hijacked stream never finishes).
    response.once('finish', () => { if (!request.socket.destroyed) unheard.add(request.socket) })
  })
  fastify.addHook('preClose', async () => {
    for (const socket of unheard) socket.destroy()
  })

  const windowS = Math.round(cfg.RATE_LIMIT_WINDOW_MS / 1000)
  await fastify.register(fastifyRateLimit, {
    global: false,
    timeWindow: cfg.RATE_LIMIT_WINDOW_MS,
    // Redis counts for every instance; when it is down, requests pass rather than fail.
    ...(fastify.redis !== null && { redis: fastify.redis.pub, nameSpace: `${cfg.REDIS_PREFIX}rate:` }),
    skipOnError: true
  })
  // No limit, no hook: every hook costs each request a few microseconds.
  const limiter = (max: number, what: 'stream' | 'publish'): Hook | null => {
    if (max === 0) return null
    return fastify.rateLimit({
      max,
      keyGenerator: request => `${what}:${normalizeIP(request.ip)}`,
      errorResponseBuilder: (_request, context) => {
        const err = new Error(`rate limit: at most ${max} ${what === 'publish' ? 'publishes' : 'new streams'} per ${windowS} s from one address; retry in ${context.after}`)
        return Object.assign(err, { statusCode: context.statusCode, retryAfterMs: context.ttl })
      }
    })
  }
  // On an SSE route the limit's 429 is a temporary refusal: sent so that EventSource retries.
  const refusing = (hook: Hook): Hook => async function (request, reply) {
    try {
      await hook.call(this, request, reply)
    } catch (err) {
      const { statusCode, retryAfterMs, message } = err as RateLimited
      if (statusCode !== 429) throw err
      return reply.refuseForNow({ statusCode, reason: 'rate_limit', retryAfterMs, message })
    }
  }
  const limiters = { streams: limiter(cfg.RATE_LIMIT_STREAMS, 'stream'), publishes: limiter(cfg.RATE_LIMIT_PUBLISH, 'publish') }

  const pressure = new Pressure({
    maxEventLoopDelayMs: cfg.PRESSURE_MAX_EVENT_LOOP_DELAY_MS,
    maxEventLoopUtilization: cfg.PRESSURE_MAX_EVENT_LOOP_UTILIZATION,
    maxHeapUsedBytes: cfg.PRESSURE_MAX_HEAP_USED_BYTES,
    maxRssBytes: cfg.PRESSURE_MAX_RSS_BYTES,
    sampleIntervalMs: cfg.PRESSURE_SAMPLE_INTERVAL_MS
  })
  fastify.decorate('isUnderPressure', () => pressure.strain !== null)
  fastify.addHook('onReady', async () => pressure.start())
  fastify.addHook('onClose', async () => pressure.stop())
  let lastWarning = 0
  // A plain 503 reply, not an error: a shed request is expected, and must not flood the log.
  const shedLoad = (request: FastifyRequest, reply: FastifyReply, { type, value }: Strain): void => {
    const measured = ` (${type} ${Number.isInteger(value) ? value : value.toFixed(2)})`
    if (Date.now() - lastWarning > 10000) {
      lastWarning = Date.now()
      request.log.warn(`under pressure${measured}: refusing new streams and publishes (logged at most every 10 s)`)
    }
    reply.refuseForNow({
      statusCode: 503,
      reason: 'pressure',
      retryAfterMs: cfg.RETRY_MS,
      message: `this instance is under pressure${measured}: open streams go on, new streams and publishes are refused for now`
    })
  }
  const underPressure = function (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
    const strain = pressure.strain
    if (strain !== null) shedLoad(request, reply, strain)
    done()
  }
  const shedding = limitsSet(pressure.limits)
  // As @fastify/rate-limit does: routes opt in through their config.
  fastify.addHook('onRoute', routeOptions => {
    const config = routeOptions.config
    const asStream = config?.sse === true ? AS_STREAM : ''
    const sheds = config?.shedsLoad === true && shedding
    if (sheds) documentAnswer(routeOptions, 503, `Under pressure (PRESSURE_MAX_*): refused for now, with Retry-After; open streams go on.${asStream}`, RETRY_AFTER)
    const limit = config?.rateLimited === undefined ? null : limiters[config.rateLimited]
    if (limit !== null) {
      const setting = config?.rateLimited === 'streams' ? 'RATE_LIMIT_STREAMS' : 'RATE_LIMIT_PUBLISH'
      documentAnswer(routeOptions, 429, `Over the rate limit (${setting} per RATE_LIMIT_WINDOW_MS from one client address), with Retry-After: when it resets.${asStream}`, RETRY_AFTER)
    }
    if (!sheds && limit === null) return
    const existing = routeOptions.onRequest
    // Shedding first, before any other check spends work on the request; the rate limit last.
    routeOptions.onRequest = [
      ...(sheds ? [underPressure] : []),
      ...(existing === undefined ? [] : Array.isArray(existing) ? existing : [existing]),
      ...(limit === null ? [] : [config?.sse === true ? refusing(limit) : limit])
    ]
  })
}

export default fp(limits, { name: 'limits', fastify: '5.x', dependencies: ['config', 'redis', 'refusals'] })
