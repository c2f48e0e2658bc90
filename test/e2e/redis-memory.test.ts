// What history costs in Redis, as a user with one topic per user sees it: a topic with
// one event stays under 1 KB, and with HISTORY_TTL_MS every history key expires.
import t from 'tap'
import { Redis } from 'ioredis'
import { notify, startInstance } from '../helpers/instance.js'
import { TestRedis } from '../helpers/redis.js'
import { until } from '../helpers/wait.js'

async function usedMemory (redis: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1])
}

/** One event to each of `topics`, in batches of 100. */
async function publishEach (url: string, topics: string[]): Promise<void> {
  for (let i = 0; i < topics.length; i += 100) {
    const res = await notify(url, topics.slice(i, i + 100).map(topic => ({ topic, event: 'created', data: { id: 42, user: topic } })))
    if (res.status !== 202 || res.body.fanout !== 'cluster') throw new Error(`publish: ${res.status} ${JSON.stringify(res.body)}`)
  }
}

const users = Array.from({ length: 1000 }, (_, i) => `user:${i}`)

t.test('1,000 one-event topics cost under 1 MB of Redis memory', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  const a = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: 'mem:' })
  await publishEach(a.url, ['warm-up'])
  const keys = await admin.dbsize()
  const before = await usedMemory(admin)
  await publishEach(a.url, users)
  const grown = await usedMemory(admin) - before
  t.ok(grown < 1_000_000, `used_memory grew by ${grown} bytes (${Math.round(grown / 1000)} per topic)`)
  t.equal(await admin.dbsize(), keys + 1000, 'one key per topic, nothing else')
})

t.test('with HISTORY_TTL_MS every history key expires and is reclaimed', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  const ttl = 2000
  const a = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: 'mem:', HISTORY_TTL_MS: ttl })
  await publishEach(a.url, ['warm-up'])
  await until(async () => await admin.exists('mem:{warm-up}') === 0, ttl + 10_000, 'the warm-up topic to expire')
  const keys = await admin.dbsize()
  await publishEach(a.url, users.slice(0, 100))
  const last = await admin.pttl('mem:{user:99}')
  t.ok(last > 0 && last <= ttl, `the key expires within HISTORY_TTL_MS: ${last} ms`)
  t.equal(await admin.dbsize(), keys + 100)
  // dbsize counts keys Redis has not reclaimed yet (and freed): it drops once they are gone for real.
  await until(async () => await admin.dbsize() <= keys, ttl + 10_000, 'the history keys to expire')
  t.pass('all gone within HISTORY_TTL_MS and Redis\'s expiry cycle')
})

t.test('HISTORY_TTL_MS=0: history keys never expire; HISTORY_SIZE per topic is their only bound', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  const a = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: 'mem:', HISTORY_TTL_MS: 0, HISTORY_SIZE: 3 })
  await publishEach(a.url, ['a', 'a', 'a', 'a', 'a', 'b'])
  t.equal(await admin.pttl('mem:{a}'), -1)
  t.equal(await admin.xlen('mem:{a}'), 3, 'trimmed to HISTORY_SIZE')
  t.equal(await admin.pttl('mem:{b}'), -1)
})

t.test('a Redis user without RESTORE: publishing works as before, one-event topics just keep their 4 KB', async t => {
  const redis = await TestRedis.start(['--user', 'default', 'on', 'nopass', '~*', '&*', '+@all', '--user', 'app', 'on', '>app-pass', '~*', '&*', '+@all', '-restore'])
  t.teardown(() => redis.stop())
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  const a = await startInstance(t, { REDIS_URL: `redis://app:app-pass@127.0.0.1:${redis.port}`, REDIS_PREFIX: 'mem:' })
  t.equal((await (await fetch(`${a.url}/health`)).json()).status, 'ok')
  await publishEach(a.url, users.slice(0, 10))
  t.equal(await admin.xlen('mem:{user:3}'), 1)
  t.ok(Number(await admin.memory('USAGE', 'mem:{user:3}')) > 4000, 'its first node keeps the 4 KB Redis gave it')
  t.equal(await admin.dbsize(), 10 + 1, 'nothing else written (the probe\'s log aside)')
})
