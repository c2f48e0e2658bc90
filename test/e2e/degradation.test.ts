// Graceful degradation with a real redis-server: Redis unreachable at start, Redis lost
// while running, one instance's link lost, Redis frozen.
import t from 'tap'
import { Redis } from 'ioredis'
import { Writable } from 'node:stream'
import { notify, openStream, startInstance, type Instance } from '../helpers/instance.js'
import { linkedPair } from '../helpers/link.js'
import { freePort, TestRedis } from '../helpers/redis.js'
import { until } from '../helpers/wait.js'

function logSink (): { lines: Array<{ level: number, msg: string }>, logger: { level: string, stream: Writable } } {
  const lines: Array<{ level: number, msg: string }> = []
  const stream = new Writable({
    write (chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') lines.push(JSON.parse(line))
      done()
    }
  })
  return { lines, logger: { level: 'info', stream } }
}

async function health (i: Instance): Promise<any> {
  return (await fetch(`${i.url}/health`)).json()
}

const prefix = (): string => `d${Math.random().toString(36).slice(2, 8)}:`

t.test('Redis unreachable at start: starts degraded at once, connects when Redis appears', async t => {
  const port = await freePort()
  const started = Date.now()
  const log = logSink()
  const a = await startInstance(t, { REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_PREFIX: prefix(), REDIS_CONNECT_TIMEOUT_MS: 1000 }, log.logger)
  t.ok(Date.now() - started < 2000, `started in ${Date.now() - started} ms`)
  t.match(await health(a), { status: 'degraded', mode: 'cluster', redis: { configured: true, connected: false } })
  const local = await openStream(t, `${a.url}/stream?topic=x`)
  const res = await notify(a.url, { topic: 'x', data: 'while down' })
  t.equal(res.status, 202)
  t.equal(res.body.fanout, 'local')
  t.equal(res.body.id, null, 'no id: the event cannot be resumed from')
  await local.untilEvents(1)

  // A second instance, also started while Redis was away, with a client of its own.
  const b = await startInstance(t, { REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_PREFIX: a.app.config.REDIS_PREFIX })
  const remote = await openStream(t, `${b.url}/stream?topic=x`)

  // Redis appears on that port: both connect; the outage event reaches the other instance.
  const redis = TestRedis.at(port)
  await redis.restart()
  t.teardown(() => redis.stop())
  await until(async () => (await health(a)).status === 'ok' && (await health(b)).status === 'ok', 5000, 'health ok')
  await until(() => remote.events.length === 1, 3000, 'the outage event reaching the other instance')
  t.same(remote.events.map(e => e.data), ['while down'], 'the event accepted during the outage reached the other instance once Redis was up')
  const after = await notify(a.url, { topic: 'x', data: 'cluster' })
  t.equal(after.body.fanout, 'cluster')
  await remote.untilEvents(2)
  await local.untilEvents(2)
  await new Promise(resolve => setTimeout(resolve, 200))
  t.same(local.events.map(e => e.data), ['while down', 'cluster'], 'no duplicate on the instance that delivered it itself')
  t.same(remote.events.map(e => e.data), ['while down', 'cluster'])
  const warnings = log.lines.filter(l => l.level >= 40)
  t.ok(warnings.length <= 4, `no log flood while retrying (${warnings.length} warnings)`)
})

t.test('Redis lost while running: local delivery goes on, and every client ends complete', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const p = prefix()
  const logA = logSink()
  const a = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: p }, logA.logger)
  const b = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: p })
  const onA = await openStream(t, `${a.url}/stream?topic=o`)
  const onB = await openStream(t, `${b.url}/stream?topic=o`)
  await notify(a.url, { topic: 'o', data: 'before' })
  await onB.untilEvents(1)

  await redis.stop()
  await until(async () => (await health(a)).status === 'degraded', 3000, 'degraded')
  for (let i = 1; i <= 5; i++) {
    const res = await notify(b.url, { topic: 'o', data: `during ${i}` })
    t.equal(res.status, 202)
    t.equal(res.body.fanout, 'local')
  }
  await onB.untilEvents(6)
  t.equal(onA.events.length, 1, 'the other instance cannot get them while Redis is down')
  t.match(await (await fetch(`${b.url}/metrics`)).text(), /^sse_outbox_events 5$/m, 'five events wait in the outbox')
  await new Promise(resolve => setTimeout(resolve, 1500)) // retries happen meanwhile
  await redis.restart()
  await until(async () => (await health(a)).status === 'ok' && (await health(b)).status === 'ok', 5000, 'both reconnected')
  await notify(a.url, { topic: 'o', data: 'after' })
  await onA.untilEvents(7)
  await onB.untilEvents(7)
  await new Promise(resolve => setTimeout(resolve, 200))
  const expected = ['before', 'during 1', 'during 2', 'during 3', 'during 4', 'during 5', 'after']
  t.same(onA.events.map(e => e.data), expected, 'instance A got what B accepted during the outage, once, in order')
  t.same(onB.events.map(e => e.data), expected, 'instance B has no duplicates')
  t.notOk(onA.ended || onB.ended, 'no stream was dropped')
  t.match(await (await fetch(`${b.url}/metrics`)).text(), /^sse_outbox_events 0$/m, 'the outbox drained')
  const warnings = logA.lines.filter(l => l.level >= 40)
  t.ok(warnings.length <= 4, `no log flood (${warnings.length} warnings)`)
})

t.test('an instance publishing its outbox says degraded until the others have it: a publish elsewhere after it says ok comes after the outbox, at every client', async t => {
  const p = prefix()
  const { link, a, b } = await linkedPair(t, p)
  const onA = await openStream(t, `${a.url}/stream?topic=d`)
  const onB = await openStream(t, `${b.url}/stream?topic=d`)
  await notify(a.url, { topic: 'd', data: 'before' })
  await onB.untilEvents(1)
  await link.cut()
  await until(async () => (await health(a)).status === 'degraded', 10000, 'A degraded')
  for (const data of ['o1', 'o2', 'o3']) t.equal((await notify(a.url, { topic: 'd', data })).body.fanout, 'local')
  // A distant Redis: each of the outbox's calls takes a while.
  link.delayMs = 300
  await link.restore()
  const reasons: string[] = []
  let outboxWhenOk = -1
  await until(async () => {
    const h = await health(a)
    if (h.status !== 'ok') {
      reasons.push(h.reason ?? '')
      return false
    }
    outboxWhenOk = Number(/^sse_outbox_events (\d+)$/m.exec(await (await fetch(`${a.url}/metrics`)).text())?.[1])
    return true
  }, 20000, 'A ok')
  t.equal(outboxWhenOk, 0, 'ok only once the outbox is published')
  t.ok(reasons.some(r => /not yet published to the other instances \(publishing them now\)/.test(r)), `while publishing it, the reason says so (${[...new Set(reasons)].join(' | ')})`)
  await notify(b.url, { topic: 'd', data: 'after' })
  await onA.untilEvents(5)
  await onB.untilEvents(5)
  await new Promise(resolve => setTimeout(resolve, 300))
  const expected = ['before', 'o1', 'o2', 'o3', 'after']
  t.same(onB.events.map(e => e.data), expected, 'B\'s client: the outbox, then the later publish')
  t.same(onA.events.map(e => e.data), expected, 'A\'s client: the same order')
})

t.test('one instance loses its Redis link: it catches up from history when back', async t => {
  const { link, a, b } = await linkedPair(t, prefix())
  const onA = await openStream(t, `${a.url}/stream?topic=k`)
  const onA2 = await openStream(t, `${a.url}/stream?topic=k&topic=other`)
  await notify(b.url, { topic: 'k', data: 0 })
  await onA.untilEvents(1)

  await link.cut()
  await until(async () => (await health(a)).status === 'degraded', 3000, 'A degraded')
  const ids: string[] = []
  for (let i = 1; i <= 20; i++) {
    const res = await notify(b.url, { topic: 'k', data: i })
    t.equal(res.body.fanout, 'cluster')
    ids.push(res.body.id)
  }
  t.equal(onA.events.length, 1, 'nothing reaches A while it is cut off')
  await link.restore()
  // Live events published right as A comes back must land after the caught-up ones.
  await until(async () => (await health(a)).status === 'ok', 5000, 'A reconnected')
  await notify(b.url, { topic: 'k', data: 21 })
  for (const c of [onA, onA2]) {
    await c.untilEvents(22)
    await new Promise(resolve => setTimeout(resolve, 150))
    t.same(c.events.map(e => Number(e.data)), Array.from({ length: 22 }, (_, i) => i), 'every event once, in order')
    t.same(c.events.slice(1, 21).map(e => e.id), ids, 'with the ids the publisher was given')
  }
  const metrics = await (await fetch(`${a.url}/metrics`)).text()
  t.match(metrics, /^sse_events_replayed_total (\d+)$/m)
})

t.test('Redis frozen (SIGSTOP) then resumed: publishes fail cleanly, then all recovers', async t => {
  const redis = await TestRedis.start()
  t.teardown(async () => { redis.resume(); await redis.stop() })
  const p = prefix()
  const a = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: p })
  const b = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: p })
  const onB = await openStream(t, `${b.url}/stream?topic=f`)
  redis.pause()
  const frozen = await notify(a.url, { topic: 'f', data: 'frozen' })
  t.equal(frozen.status, 503, 'a publish to a frozen Redis fails in bounded time')
  t.match(frozen.body.message, /may or may not have been sent/)
  t.ok(Number(frozen.headers.get('retry-after')) >= 1)
  redis.resume()
  await until(async () => (await notify(a.url, { topic: 'f', data: 'probe' })).body.fanout === 'cluster', 10000, 'publishing through Redis again')
  const res = await notify(a.url, { topic: 'f', data: 'thawed' })
  t.equal(res.status, 202)
  await onB.until(c => c.events.some(e => e.data === 'thawed'), 5000, 'thawed event')
  const thawed = onB.events.filter(e => e.data === 'thawed')
  t.equal(thawed.length, 1)
  t.match(await health(a), { status: 'ok' })
})

t.test('PUBLISH_WHEN_DEGRADED=reject answers 503 while Redis is down, and delivers nothing', async t => {
  const port = await freePort()
  const a = await startInstance(t, { REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_PREFIX: prefix(), PUBLISH_WHEN_DEGRADED: 'reject' })
  const c = await openStream(t, `${a.url}/stream?topic=x`)
  const res = await notify(a.url, { topic: 'x', data: 1 })
  t.equal(res.status, 503)
  t.match(res.body.message, /PUBLISH_WHEN_DEGRADED=reject/)
  t.ok(Number(res.headers.get('retry-after')) >= 1)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(c.events.length, 0)
})

t.test('Redis refuses writes for a while (maxmemory reached), then accepts them again: the instance recovers by itself, and what it kept reaches the others once', async t => {
  const redis = await TestRedis.start()
  t.teardown(async () => await redis.stop())
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  const p = prefix()
  const a = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: p })
  const b = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: p })
  const onA = await openStream(t, `${a.url}/stream?topic=m`)
  const onB = await openStream(t, `${b.url}/stream?topic=m`)
  t.equal((await notify(a.url, { topic: 'm', data: 'before' })).body.fanout, 'cluster')
  await onB.untilEvents(1)

  await admin.config('SET', 'maxmemory', '1')
  const refused = await notify(a.url, { topic: 'm', data: 'refused' })
  t.equal(refused.status, 503, 'the publish Redis refused is answered 503')
  t.match(refused.body.message, /OOM/)
  t.equal((await health(a)).status, 'degraded', 'health says degraded at once')
  // The proof that follows names Redis's own reason.
  await until(async () => /OOM/.test((await health(a)).reason ?? ''), 3000, 'health naming OOM')
  const kept = await notify(a.url, { topic: 'm', data: 'kept' })
  t.same([kept.status, kept.body.fanout], [202, 'local'], 'while degraded, an event is delivered here and kept for the others')

  await admin.config('SET', 'maxmemory', '0')
  // Nothing reconnects: the instance must prove the path again by itself.
  await until(async () => (await health(a)).status === 'ok', 5000, 'A ok again without a reconnection')
  await onB.until(s => s.events.some(e => e.data === 'kept'), 5000, 'B: the kept event')
  const after = await notify(a.url, { topic: 'm', data: 'after' })
  t.equal(after.body.fanout, 'cluster', 'publishing through Redis again')
  for (const [name, c] of [['A', onA], ['B', onB]] as const) {
    await c.until(s => s.events.some(e => e.data === 'after'), 5000, `${name}: the event after`)
    await new Promise(resolve => setTimeout(resolve, 150))
    t.same(c.events.map(e => e.data), ['before', 'kept', 'after'], `${name}: the kept event once, in its place; the refused one never`)
  }
})
