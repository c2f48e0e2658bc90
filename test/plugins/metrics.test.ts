// The metrics: streams, publishes, deliveries and requests, as /metrics shows them.
import t from 'tap'
import { LOOP_DELAY_RESOLUTION_MS } from '../../src/loop-delay.js'
import { notify, openStream, startInstance, type Instance } from '../helpers/instance.js'
import { linkedPair } from '../helpers/link.js'
import { TestRedis } from '../helpers/redis.js'
import { until } from '../helpers/wait.js'

async function scrape (i: Instance): Promise<string> {
  return await (await fetch(`${i.url}/metrics`)).text()
}

/** The value of one sample (`name` with its labels, as printed), 0 when absent. */
function sample (text: string, name: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1))
  }
  return 0
}

const prefix = (): string => `m${Math.random().toString(36).slice(2, 8)}:`

t.test('metrics count streams, publishes, deliveries and requests', async t => {
  const { url } = await startInstance(t)
  const c = await openStream(t, `${url}/stream?topic=m`)
  await notify(url, { topic: 'm', data: 1 })
  await c.untilEvents(1)
  const text = await (await fetch(`${url}/metrics`)).text()
  t.match(text, /^sse_clients 1$/m)
  t.match(text, /^sse_events_published_total\{fanout="local"\} 1$/m)
  t.match(text, /^sse_events_delivered_total 1$/m)
  t.match(text, /^sse_redis_connected 0$/m)
  t.match(text, /^sse_slow_clients_disconnected_total 0$/m)
  t.match(text, /^sse_events_replayed_total 0$/m)
  t.match(text, /http_requests_total\{method="POST",route="\/notify",status="202"\} 1/)
})

t.test('fan-out duration and publish-to-write age: one observation per flush, not per client or event', async t => {
  const i = await startInstance(t)
  const clients = await Promise.all([1, 2, 3].map(async () => await openStream(t, `${i.url}/stream?topic=f`)))
  let text = await scrape(i)
  t.equal(sample(text, 'sse_fanout_duration_seconds_count'), 0, 'nothing flushed yet')
  t.equal(sample(text, 'sse_publish_to_write_seconds_count{client="last"}'), 0)

  await notify(i.url, { topic: 'f', data: 1 })
  for (const c of clients) await c.untilEvents(1)
  text = await scrape(i)
  t.equal(sample(text, 'sse_fanout_duration_seconds_count'), 1, 'one event to three clients: one flush')
  t.ok(sample(text, 'sse_fanout_duration_seconds_sum') > 0)
  t.equal(sample(text, 'sse_publish_to_write_seconds_count{client="first"}'), 1)
  t.equal(sample(text, 'sse_publish_to_write_seconds_count{client="last"}'), 1)
  const firstAge = sample(text, 'sse_publish_to_write_seconds_sum{client="first"}')
  const lastAge = sample(text, 'sse_publish_to_write_seconds_sum{client="last"}')
  t.ok(firstAge > 0 && firstAge <= lastAge, `accepted before the first write (${firstAge} s), which is before the last (${lastAge} s)`)
  t.ok(lastAge < 5, 'an age in seconds, not milliseconds')
  t.equal(sample(text, 'sse_publish_to_write_seconds_bucket{le="+Inf",client="last"}'), 1)

  t.equal((await notify(i.url, [1, 2, 3, 4, 5].map(data => ({ topic: 'f', data })))).status, 202)
  for (const c of clients) await c.untilEvents(6)
  text = await scrape(i)
  t.equal(sample(text, 'sse_fanout_duration_seconds_count'), 2, 'a batch of five is one more flush')
  t.equal(sample(text, 'sse_publish_to_write_seconds_count{client="last"}'), 2)
})

t.test('resumes by outcome and resets by reason', async t => {
  const i = await startInstance(t, { HISTORY_SIZE: 2 })
  const ids: string[] = []
  for (let n = 1; n <= 5; n++) ids.push((await notify(i.url, { topic: 'r', data: n })).body.id)
  let text = await scrape(i)
  t.notMatch(text, /^sse_resumes_total\{/m, 'no resume yet')
  t.notMatch(text, /^sse_resets_total\{/m)

  const covered = await openStream(t, `${i.url}/stream?topic=r`, { 'last-event-id': ids[3] })
  await covered.untilEvents(1)
  t.equal(covered.events[0].data, '5', 'history covered it: the missed event replayed')
  const trimmed = await openStream(t, `${i.url}/stream?topic=r`, { 'last-event-id': ids[0] })
  await trimmed.until(c => c.events.some(e => e.event === 'reset'), 5000, 'a reset')
  // A cursor with more parts than the stream has logs: no part can be trusted, a reset for each.
  const changed = await openStream(t, `${i.url}/stream?topic=r&topic=s`, { 'last-event-id': `${ids[4]}.${ids[4]}.${ids[4]}.${ids[4]}` })
  await changed.until(c => c.events.filter(e => e.event === 'reset').length === 3, 5000, 'three resets')

  text = await scrape(i)
  t.equal(sample(text, 'sse_resumes_total{outcome="replayed"}'), 1)
  t.equal(sample(text, 'sse_resumes_total{outcome="reset"}'), 2)
  t.equal(sample(text, 'sse_resets_total{reason="history"}'), 4, 'one per topic (and the broadcasts) whose history fell short')
  t.equal(sample(text, 'sse_resets_total{reason="history-unavailable"}'), 0)
})

t.test('the event loop lag comes with the default metrics', async t => {
  const i = await startInstance(t)
  await scrape(i) // each scrape reports the lag since the one before
  // The instance runs in this process: block its loop for 300 ms, in a callback as a slow
  // handler would, once the monitor ticked after the scrape (its first tick after a reset records nothing).
  await new Promise<void>(resolve => setTimeout(() => {
    const blockedUntil = Date.now() + 300
    while (Date.now() < blockedUntil);
    resolve()
  }, LOOP_DELAY_RESOLUTION_MS + 30))
  await new Promise(resolve => setTimeout(resolve, 30))
  const text = await scrape(i)
  const max = sample(text, 'nodejs_eventloop_lag_max_seconds')
  // A sample due during the block fires when it ends: at most one resolution after it began.
  t.ok(max >= 0.3 - LOOP_DELAY_RESOLUTION_MS / 1000, `a 300 ms block shows (max ${max} s)`)
  t.ok(max <= 0.35, 'as the time the sample fired late, the resolution not counted')
  t.match(text, /^nodejs_eventloop_lag_p99_seconds \d/m)
})

t.test('Redis command latency: publish script calls and history reads', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const i = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix() })
  let text = await scrape(i)
  t.equal(sample(text, 'sse_redis_command_duration_seconds_count{command="publish"}'), 0, 'the start-up proof is not counted')

  const c = await openStream(t, `${i.url}/stream?topic=q`)
  const { body } = await notify(i.url, { topic: 'q', data: 1 })
  t.equal(body.fanout, 'cluster')
  await c.untilEvents(1)
  text = await scrape(i)
  t.equal(sample(text, 'sse_redis_command_duration_seconds_count{command="publish"}'), 1, 'one publish, one script call')
  t.ok(sample(text, 'sse_redis_command_duration_seconds_sum{command="publish"}') > 0)
  const reads = sample(text, 'sse_redis_command_duration_seconds_count{command="history"}')
  t.ok(reads >= 2, 'the subscriptions (the topic, the broadcasts) read their heads')

  await notify(i.url, { topic: 'q', data: 2 })
  const resumed = await openStream(t, `${i.url}/stream?topic=q`, { 'last-event-id': body.id })
  await resumed.untilEvents(1)
  text = await scrape(i)
  t.equal(sample(text, 'sse_redis_command_duration_seconds_count{command="history"}'), reads + 2, 'the resume read the history of its topic and of the broadcasts, once each')
  t.equal(sample(text, 'sse_redis_command_duration_seconds_count{command="history"}'), sample(text, 'sse_history_reads_total'))
  t.equal(sample(text, 'sse_resumes_total{outcome="replayed"}'), 1)
})

t.test('Redis stopped: a resume gets history-unavailable, a local publish is timed from its accept', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const i = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix() })
  const live = await openStream(t, `${i.url}/stream?topic=u`)
  const { body } = await notify(i.url, { topic: 'u', data: 1 })
  await live.untilEvents(1)
  await redis.stop()
  await until(async () => sample(await scrape(i), 'sse_redis_connected') === 0, 5000, 'Redis seen gone')
  const before = await scrape(i)

  const resumed = await openStream(t, `${i.url}/stream?topic=u`, { 'last-event-id': body.id })
  await resumed.until(c => c.events.some(e => e.event === 'reset'), 5000, 'a reset')
  t.match(resumed.events[0].data, /"history-unavailable"/)
  t.equal((await notify(i.url, { topic: 'u', data: 2 })).body.fanout, 'local')
  await live.untilEvents(2)

  const text = await scrape(i)
  t.equal(sample(text, 'sse_resumes_total{outcome="history-unavailable"}'), 1)
  t.equal(sample(text, 'sse_resets_total{reason="history-unavailable"}'), 1)
  t.equal(sample(text, 'sse_publish_to_write_seconds_count{client="last"}') - sample(before, 'sse_publish_to_write_seconds_count{client="last"}'), 1,
    'the event delivered here during the outage is timed (on both streams: one flush)')
})

t.test('publish-to-write age through Redis counts from the append, also for an instance that caught up late', async t => {
  const { link, a, b } = await linkedPair(t, prefix())
  const onA = await openStream(t, `${a.url}/stream?topic=k`)
  await notify(b.url, { topic: 'k', data: 0 })
  await onA.untilEvents(1)
  let text = await scrape(a)
  t.equal(sample(text, 'sse_publish_to_write_seconds_count{client="last"}'), 1, 'an event published on the other instance is timed where it is written')
  t.ok(sample(text, 'sse_publish_to_write_seconds_sum{client="last"}') < 0.25)

  await link.cut()
  await until(async () => sample(await scrape(a), 'sse_redis_connected') === 0, 3000, 'A cut off')
  t.equal((await notify(b.url, { topic: 'k', data: 1 })).body.fanout, 'cluster')
  await new Promise(resolve => setTimeout(resolve, 700))
  await link.restore()
  await onA.untilEvents(2, 10_000)
  text = await scrape(a)
  const count = sample(text, 'sse_publish_to_write_seconds_count{client="last"}')
  t.ok(count >= 2)
  t.ok(sample(text, 'sse_publish_to_write_seconds_sum{client="last"}') >= 0.7, 'the caught-up event is as old as the outage')
  t.equal(sample(text, 'sse_publish_to_write_seconds_bucket{le="0.5",client="last"}'), 1, 'only the first event was young')
})
