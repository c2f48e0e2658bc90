// Whatever Redis loses, a resume that history cannot cover exactly gets a reset for that
// topic: a restart without persistence, FLUSHALL, eviction under maxmemory. And a policy
// that can evict the history is warned about at start.
import t from 'tap'
import { Redis } from 'ioredis'
import { notify, openStream, startInstance, type Instance } from '../helpers/instance.js'
import { startCluster } from '../helpers/redis-cluster.js'
import { TestRedis } from '../helpers/redis.js'
import { until } from '../helpers/wait.js'

function logSink (): { lines: any[], logger: any } {
  const lines: any[] = []
  return { lines, logger: { level: 'info', stream: { write: (line: string) => lines.push(JSON.parse(line)) } } }
}

/** Publishes `data` to `topic` one by one; the ids. */
async function publish (n: Instance, topic: string, data: string[]): Promise<string[]> {
  const ids: string[] = []
  for (const d of data) {
    const res = await notify(n.url, { topic, data: d })
    if (res.status !== 202 || res.body.fanout !== 'cluster') throw new Error(`publish ${d}: ${res.status} ${JSON.stringify(res.body)}`)
    ids.push(res.body.id)
  }
  return ids
}

t.test('Redis restarted without persistence: a client holding e2 resumes and is told, not handed e6 as if nothing was lost', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const a = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: 'rs:' })
  const ids = await publish(a, 'x', ['e1', 'e2', 'e3', 'e4', 'e5'])
  await redis.stop()
  await redis.restart()
  await until(async () => (await (await fetch(`${a.url}/health`)).json()).status === 'ok', 10000, 'reconnected')
  await publish(a, 'x', ['e6', 'e7'])
  const c = await openStream(t, `${a.url}/stream?topic=x`, { 'last-event-id': ids[1] })
  await c.untilEvents(3)
  t.equal(c.events[0].event, 'reset', 'the loss is signalled first')
  t.match(JSON.parse(c.events[0].data), { reason: 'history', topic: 'x' })
  t.same(c.events.slice(1).map(e => e.data), ['e6', 'e7'], 'then what history holds')
})

t.test('FLUSHALL: the same', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const a = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: 'fl:' })
  const ids = await publish(a, 'x', ['e1', 'e2', 'e3'])
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  await admin.flushall()
  await publish(a, 'x', ['e4'])
  const c = await openStream(t, `${a.url}/stream?topic=x`, { 'last-event-id': ids[1] })
  await c.untilEvents(2)
  t.equal(c.events[0].event, 'reset')
  t.same(c.events.slice(1).map(e => e.data), ['e4'])
  // The reset's successor carries an id to resume from without the same gap.
  const again = await openStream(t, `${a.url}/stream?topic=x`, { 'last-event-id': c.lastEventId! })
  await publish(a, 'x', ['e5'])
  await again.untilEvents(1)
  t.same(again.events.map(e => [e.event, e.data]), [[undefined, 'e5']], 'no second reset')
})

t.test('eviction under maxmemory (allkeys-random): a resume whose history was evicted gets a reset, never a silent gap; and the policy is warned about', async t => {
  const redis = await TestRedis.start(['--maxmemory', '4mb', '--maxmemory-policy', 'allkeys-random'])
  t.teardown(() => redis.stop())
  const log = logSink()
  const a = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: 'ev:' }, log.logger)
  await until(async () => log.lines.some(l => /maxmemory-policy/.test(l.msg ?? '')), 3000, 'the warning')
  t.ok(log.lines.some(l => l.level === 40 && /allkeys-random/.test(l.msg) && /noeviction/.test(l.msg)), 'one clear warning naming the policy and the fix')
  const ids = await publish(a, 'x', ['e1', 'e2', 'e3'])
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  // Fill Redis until the topic's history is evicted.
  const filler = 'f'.repeat(64 * 1024)
  for (let i = 0; i < 2000 && await admin.exists('ev:{x}') === 1; i++) await admin.set(`filler:${i}`, filler).catch(() => {})
  t.equal(await admin.exists('ev:{x}'), 0, 'the history was evicted')
  await admin.flushdb() // room again: the log begins anew
  await publish(a, 'x', ['e4'])
  const c = await openStream(t, `${a.url}/stream?topic=x`, { 'last-event-id': ids[0] })
  await c.untilEvents(2)
  t.equal(c.events[0].event, 'reset', 'e2 and e3 are gone: said so')
  t.same(c.events.slice(1).map(e => e.data), ['e4'])
})

t.test('noeviction: no warning', async t => {
  const redis = await TestRedis.start(['--maxmemory-policy', 'noeviction'])
  t.teardown(() => redis.stop())
  const log = logSink()
  const a = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: 'ne:' }, log.logger)
  await publish(a, 'x', ['e1'])
  await new Promise(resolve => setTimeout(resolve, 200))
  t.notOk(log.lines.some(l => /maxmemory-policy/.test(l.msg ?? '')))
})

t.test('on a Redis Cluster: FLUSHALL on the topic\'s master, and a resume on another instance is told, not handed a silent gap', async t => {
  const cluster = await startCluster(t)
  const prefix = 'lc:'
  const [a, b] = await Promise.all([0, 1].map(async () => await startInstance(t, { REDIS_URL: cluster.url, REDIS_PREFIX: prefix, REDIS_CONNECT_TIMEOUT_MS: 3000 })))
  const ids = await publish(a, 'x', ['e1', 'e2', 'e3'])
  const master = await cluster.masterForKey(`${prefix}{x}`)
  const admin = new Redis({ host: '127.0.0.1', port: master, username: cluster.username, password: cluster.password })
  t.teardown(() => admin.quit())
  t.equal(await admin.exists(`${prefix}{x}`), 1, 'the topic\'s history is on that master')
  await admin.flushall()
  await publish(b, 'x', ['e4'])
  const c = await openStream(t, `${b.url}/stream?topic=x`, { 'last-event-id': ids[1] })
  await c.untilEvents(2)
  t.equal(c.events[0].event, 'reset', 'the loss is signalled first')
  t.match(JSON.parse(c.events[0].data), { reason: 'history', topic: 'x' })
  t.same(c.events.slice(1).map(e => e.data), ['e4'], 'then what history holds')
})
