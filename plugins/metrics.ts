// Prometheus metrics. Delivery counts live as plain numbers in the hub (no metric call
// per delivery); they are read when /metrics is scraped. Timings come through callbacks
// the fan-out hands to the hub (once per flush) and the Redis bus (once per call).
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { RESET_REASONS } from '../src/frame.js'
import { HttpMetrics } from '../src/http-metrics.js'
import { LOOP_DELAY_RESOLUTION_MS, watchLoopDelay } from '../src/loop-delay.js'
import { REFUSAL_REASONS } from '../src/refusal.js'
import { RESUME_OUTCOMES, type ResumeCounts } from '../src/resume.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: {
      registry: Registry
      /** Events accepted by POST /notify, by fanout; plain numbers, read at scrape time. */
      published: Record<'cluster' | 'local', number>
      /** Counted by resume() as it goes; read at scrape time. */
      resumes: ResumeCounts
      /** The hub's HubOptions.flushed. */
      flushed: (started: number, oldestAcceptedAt: number | null) => void
      /** The Redis bus's RedisBusOptions.answered. */
      answered: (command: 'publish' | 'history', ms: number) => void
    }
  }
}

async function metrics (fastify: FastifyInstance): Promise<void> {
  const registry = new Registry()
  // Read at scrape time: the fan-out is registered after this plugin, which it reports to.
  const hub = (): FastifyInstance['hub'] => fastify.hub
  const bus = (): FastifyInstance['bus'] => fastify.bus
  // prom-client's own event-loop monitor wakes the process every 10 ms: made (almost) never
  // to fire, its seven gauges replaced below by the shared sampler's, over the time since the last scrape.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 2 ** 31 - 1 })
  const lagNames = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'] as const
  for (const name of lagNames) registry.removeSingleMetric(`nodejs_eventloop_lag_${name}_seconds`)
  const delay = watchLoopDelay()
  fastify.addHook('onClose', async () => delay.close())
  const lag: Record<typeof lagNames[number], number> = { min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0 }
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'nodejs_eventloop_lag_max_seconds',
    help: `The maximum recorded event loop delay (sampled every ${LOOP_DELAY_RESOLUTION_MS} ms).`,
    registers: [registry],
    collect () {
      const h = delay.window()
      lag.min = h.min / 1e9
      lag.max = h.max / 1e9
      lag.mean = h.mean / 1e9
      lag.stddev = h.stddev / 1e9
      lag.p50 = h.percentile(50) / 1e9
      lag.p90 = h.percentile(90) / 1e9
      lag.p99 = h.percentile(99) / 1e9
      delay.reset()
      this.set(lag.max)
    }
  })
  for (const name of lagNames.filter(n => n !== 'max')) {
    // eslint-disable-next-line no-new
    new Gauge({ name: `nodejs_eventloop_lag_${name}_seconds`, help: `The ${name} of the recorded event loop delays (sampled every ${LOOP_DELAY_RESOLUTION_MS} ms).`, registers: [registry], collect () { this.set(lag[name]) } })
  }
  const gauge = (name: string, help: string, read: () => number): void => {
    // eslint-disable-next-line no-new
    new Gauge({ name, help, registers: [registry], collect () { this.set(read()) } })
  }
  const total = (name: string, help: string, read: () => number): void => {
    // eslint-disable-next-line no-new
    new Counter({ name, help, registers: [registry], collect () { this.reset(); this.inc(read()) } })
  }
  gauge('sse_clients', 'Open SSE streams on this instance', () => hub().size)
  gauge('sse_outbox_events', 'Events accepted during a Redis outage, waiting to reach the other instances',
    () => bus().queued)
  gauge('sse_redis_connected', '1 when both Redis connections are up, else 0', () => fastify.isRedisConnected() ? 1 : 0)
  gauge('sse_redis_masters', 'Redis masters this instance sees: 1 for one Redis, the masters of a Redis Cluster, 0 without Redis', () => fastify.redis?.nodes() ?? 0)
  total('sse_history_reads_total', 'History reads sent to Redis (a reconnect storm\'s resumes of one topic in one turn share one)', () => bus().historyReads)
  gauge('sse_topics_read', 'Logs (topics, and the broadcasts) local clients read: what this instance is subscribed to', () => hub().logs().length)
  total('sse_events_delivered_total', 'Frames written to client streams', () => hub().delivered)
  total('sse_events_dropped_total', 'Frames a slow client was cut off with: the last write that overflowed its buffer, or the events held for it (bytes already in its socket are not counted)', () => hub().dropped)
  total('sse_slow_clients_disconnected_total', 'Clients disconnected for exceeding CLIENT_BUFFER_BYTES', () => hub().slowDisconnected)
  total('sse_events_replayed_total', 'Events replayed from history (client resume and instance catch-up)',
    () => hub().replayed + bus().replayed)
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
  const resumes: ResumeCounts = {
    outcomes: Object.fromEntries(RESUME_OUTCOMES.map(outcome => [outcome, 0])) as ResumeCounts['outcomes'],
    resets: Object.fromEntries(RESET_REASONS.map(reason => [reason, 0])) as ResumeCounts['resets']
  }
  // eslint-disable-next-line no-new
  new Counter({
    name: 'sse_resumes_total',
    help: 'Streams opened with a Last-Event-ID, by outcome: replayed (history covered it), reset (a topic\'s history no longer did), history-unavailable (history could not be read), abandoned (the client left first)',
    labelNames: ['outcome'],
    registers: [registry],
    collect () {
      this.reset()
      for (const outcome of RESUME_OUTCOMES) if (resumes.outcomes[outcome] > 0) this.inc({ outcome }, resumes.outcomes[outcome])
    }
  })
  // eslint-disable-next-line no-new
  new Counter({
    name: 'sse_resets_total',
    help: '`event: reset` sent to resuming streams, by the reason they carry: history (it no longer covers the position in a topic: trimmed, expired or lost; one per topic) or history-unavailable (it could not be read)',
    labelNames: ['reason'],
    registers: [registry],
    collect () {
      this.reset()
      for (const reason of RESET_REASONS) if (resumes.resets[reason] > 0) this.inc({ reason }, resumes.resets[reason])
    }
  })
  const latency = new Histogram({
    name: 'sse_publish_to_write_seconds',
    help: 'Per pass over the clients with queued frames, the age of its oldest event when the pass wrote its first client (client="first") and its last (client="last"). Age from POST /notify accepting it on this instance, or, for an event that came through Redis, from its append in Redis (its id\'s time, Redis\'s clock, ms resolution: compare clocks when Redis is on another host)',
    labelNames: ['client'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry]
  })
  const first = latency.labels('first')
  const last = latency.labels('last')
  const fanoutDuration = new Histogram({
    name: 'sse_fanout_duration_seconds',
    help: 'Time one pass takes to write every client queued when it began (a pass writes a slice per event-loop turn, so it may span several)',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry]
  })
  const redisDuration = new Histogram({
    name: 'sse_redis_command_duration_seconds',
    help: 'Round trip of the calls Redis answered: command="publish" (one publish script call: a turn\'s events, up to 256, of one topic on a Redis Cluster, of up to 128 topics on one Redis) or "history" (one history read: a resume, a subscription\'s head, a catch-up)',
    labelNames: ['command'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry]
  })
  const commands = { publish: redisDuration.labels('publish'), history: redisDuration.labels('history') }
  const flushed = (started: number, oldestAcceptedAt: number | null): void => {
    const now = performance.now()
    fanoutDuration.observe((now - started) / 1000)
    if (oldestAcceptedAt === null) return
    first.observe((started - oldestAcceptedAt) / 1000)
    last.observe((now - oldestAcceptedAt) / 1000)
  }
  const answered = (command: 'publish' | 'history', ms: number): void => commands[command].observe(ms / 1000)
  const http = new HttpMetrics()
  registry.registerMetric(http.requests() as never)
  registry.registerMetric(http.durations() as never)
  // A callback hook, not an async one: no promise per request.
  fastify.addHook('onResponse', (request, reply, done) => {
    http.record(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000)
    done()
  })
  fastify.decorate('metrics', { registry, published, resumes, flushed, answered })
}

export default fp(metrics, { name: 'metrics', fastify: '5.x', dependencies: ['redis', 'refusals'] })
