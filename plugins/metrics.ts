// Prometheus metrics. Delivery counts live as plain numbers in the hub (no metric call
// per delivery); they are read when /metrics is scraped.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { REFUSAL_REASONS } from '../src/refusal.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** `published`: events accepted by POST /notify, by fanout; plain numbers, read at scrape time. */
    metrics: { registry: Registry, published: Record<'cluster' | 'local', number> }
  }
}

async function metrics (fastify: FastifyInstance): Promise<void> {
  const registry = new Registry()
  const { hub, bus } = fastify
  collectDefaultMetrics({ register: registry })
  const gauge = (name: string, help: string, read: () => number): void => {
    // eslint-disable-next-line no-new
    new Gauge({ name, help, registers: [registry], collect () { this.set(read()) } })
  }
  const total = (name: string, help: string, read: () => number): void => {
    // eslint-disable-next-line no-new
    new Counter({ name, help, registers: [registry], collect () { this.reset(); this.inc(read()) } })
  }
  gauge('sse_clients', 'Open SSE streams on this instance', () => hub.size)
  gauge('sse_outbox_events', 'Events accepted during a Redis outage, waiting to reach the other instances',
    () => bus.queued)
  gauge('sse_redis_connected', '1 when both Redis connections are up, else 0', () => fastify.isRedisConnected() ? 1 : 0)
  gauge('sse_redis_masters', 'Redis masters this instance sees: 1 for one Redis, the masters of a Redis Cluster, 0 without Redis', () => fastify.redis?.nodes() ?? 0)
  total('sse_history_reads_total', 'History reads sent to Redis (a reconnect storm\'s resumes of one topic in one turn share one)', () => bus.historyReads)
  gauge('sse_topics_read', 'Logs (topics, and the broadcasts) local clients read: what this instance is subscribed to', () => hub.logs().length)
  total('sse_events_delivered_total', 'Frames written to client streams', () => hub.delivered)
  total('sse_events_dropped_total', 'Frames a slow client was cut off with: the last write that overflowed its buffer, or the events held for it (bytes already in its socket are not counted)', () => hub.dropped)
  total('sse_slow_clients_disconnected_total', 'Clients disconnected for exceeding CLIENT_BUFFER_BYTES', () => hub.slowDisconnected)
  total('sse_events_replayed_total', 'Events replayed from history (client resume and instance catch-up)',
    () => hub.replayed + bus.replayed)
  const published = { cluster: 0, local: 0 }
  // eslint-disable-next-line no-new
  new Counter({
    name: 'sse_events_published_total',
    help: 'Events accepted by POST /notify',
    labelNames: ['fanout'],
    registers: [registry],
    collect () {
      this.reset()
      for (const fanout of ['cluster', 'local'] as const) if (published[fanout] > 0) this.inc({ fanout }, published[fanout])
    }
  })
  const { refused } = fastify.refusals
  // eslint-disable-next-line no-new
  new Counter({
    name: 'sse_stream_refusals_total',
    help: 'GET /stream requests refused for now (answered as a stream that ends to EventSource, else 503 or 429), by reason',
    labelNames: ['reason'],
    registers: [registry],
    collect () {
      this.reset()
      for (const reason of REFUSAL_REASONS) if (refused[reason] > 0) this.inc({ reason }, refused[reason])
    }
  })
  const requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'], registers: [registry] })
  const duration = new Histogram({ name: 'http_request_duration_seconds', help: 'HTTP request duration', labelNames: ['method', 'route'], registers: [registry] })

  // A callback hook, not an async one: no promise per request.
  fastify.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched'
    requests.inc({ method: request.method, route, status: reply.statusCode })
    duration.observe({ method: request.method, route }, reply.elapsedTime / 1000)
    done()
  })
  fastify.decorate('metrics', { registry, published })
}

export default fp(metrics, { name: 'metrics', fastify: '5.x', dependencies: ['fanout', 'refusals'] })
