// Limits that protect the instance rather than one request: rate limits per client
// address (shared through Redis when present), load shedding under event-loop or memory
// pressure, and the HTTP timeouts that end slow-loris clients. Open streams are never
// touched: only new streams and publishes are refused.
import proxyAddr from '@fastify/proxy-addr'
import fastifyRateLimit, { normalizeIP } from '@fastify/rate-limit'
import fastifyUnderPressure from '@fastify/under-pressure'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { splitList } from '../src/config.js'

type Hook = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>
/** under-pressure sends what it returns (sync), or lets the request pass when it returns nothing. */
type PressureHandler = (request: FastifyRequest, reply: FastifyReply, type: string, value: number | undefined) => unknown

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook of GET /stream: RATE_LIMIT_STREAMS per client address (null: no limit). */
    limitStreams: Hook | null
    /** onRequest hook of POST /notify: RATE_LIMIT_PUBLISH per client address (null: no limit). */
    limitPublish: Hook | null
    /** Route config `pressureHandler` of the routes that shed load (503) under pressure. */
    shedLoad: PressureHandler
  }
  interface FastifyContextConfig {
    pressureHandler?: PressureHandler
  }
}

/** TRUST_PROXY as the predicate Fastify's trustProxy takes (addresses, CIDRs, presets). */
export function trustedProxies (setting: string): (address: string, hop: number) => boolean {
  const list = splitList(setting)
  if (list.length === 0) return () => false
  try {
    return proxyAddr.compile(list)
  } catch (err) {
    throw new Error(`TRUST_PROXY: ${(err as Error).message}`)
  }
}

async function limits (fastify: FastifyInstance): Promise<void> {
  const cfg = fastify.config
  if (cfg.HEADERS_TIMEOUT_MS > cfg.REQUEST_TIMEOUT_MS) {
    throw new Error(`HEADERS_TIMEOUT_MS (${cfg.HEADERS_TIMEOUT_MS}) must not exceed REQUEST_TIMEOUT_MS (${cfg.REQUEST_TIMEOUT_MS})`)
  }
  // Both count until the request is fully received: a stream's open response is not affected.
  fastify.server.headersTimeout = cfg.HEADERS_TIMEOUT_MS
  fastify.server.requestTimeout = cfg.REQUEST_TIMEOUT_MS
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
  const limiter = (max: number, what: string): Hook | null => {
    if (max === 0) return null
    return fastify.rateLimit({
      max,
      keyGenerator: request => `${what}:${normalizeIP(request.ip)}`,
      errorResponseBuilder: (_request, context) => {
        const err = new Error(`rate limit: at most ${max} ${what === 'publish' ? 'publishes' : 'new streams'} per ${windowS} s from one address; retry in ${context.after}`)
        return Object.assign(err, { statusCode: context.statusCode })
      }
    })
  }
  fastify.decorate('limitStreams', limiter(cfg.RATE_LIMIT_STREAMS, 'stream'))
  fastify.decorate('limitPublish', limiter(cfg.RATE_LIMIT_PUBLISH, 'publish'))

  const retryAfter = String(Math.max(1, Math.ceil(cfg.RETRY_MS / 1000)))
  let lastWarning = 0
  // A plain 503 reply, not an error: a shed request is expected, and must not flood the log.
  fastify.decorate('shedLoad', function (request: FastifyRequest, reply: FastifyReply, type: string, value: number | undefined) {
    const measured = value === undefined ? '' : ` (${type} ${Number.isInteger(value) ? value : value.toFixed(2)})`
    if (Date.now() - lastWarning > 10000) {
      lastWarning = Date.now()
      request.log.warn(`under pressure${measured}: refusing new streams and publishes (logged at most every 10 s)`)
    }
    reply.code(503).header('retry-after', retryAfter)
    return { statusCode: 503, error: 'Service Unavailable', message: `this instance is under pressure${measured}: open streams go on, new streams and publishes are refused for now` }
  })
  const pressure = {
    maxEventLoopDelay: cfg.PRESSURE_MAX_EVENT_LOOP_DELAY_MS,
    maxEventLoopUtilization: cfg.PRESSURE_MAX_EVENT_LOOP_UTILIZATION,
    maxHeapUsedBytes: cfg.PRESSURE_MAX_HEAP_USED_BYTES,
    maxRssBytes: cfg.PRESSURE_MAX_RSS_BYTES
  }
  if (Object.values(pressure).some(x => x > 0)) {
    await fastify.register(fastifyUnderPressure, {
      ...pressure,
      sampleInterval: cfg.PRESSURE_SAMPLE_INTERVAL_MS,
      eventLoopUtilizationMode: 'interval',
      // Only routes that opt in (config.pressureHandler) are refused: /health and /metrics keep answering.
      pressureHandler: () => {}
    })
  }
}

export default fp(limits, { name: 'limits', fastify: '5.x', dependencies: ['config', 'redis'] })
