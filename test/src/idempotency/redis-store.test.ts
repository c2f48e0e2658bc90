// The Redis store on a real redis-server and on a real Redis Cluster: the scripts claim
// once, replace only what they hold, keep the expiry; two stores (two instances) agree.
import t from 'tap'
import { Cluster, Redis } from 'ioredis'
import { Idempotency, type Answer } from '../../../src/idempotency/idempotency.js'
import { idempotencyKey, RedisIdempotencyStore } from '../../../src/idempotency/redis-store.js'
import { keySlot, startCluster } from '../../helpers/redis-cluster.js'
import { TestRedis } from '../../helpers/redis.js'

t.test('idempotencyKey: under the prefix, its own hash tag, never a topic\'s log key', async t => {
  t.equal(idempotencyKey('sse:', 'abc'), 'sse:idem:{abc}')
  t.notOk(idempotencyKey('sse:', 'abc').startsWith('sse:{'), 'log keys are <prefix>{<topic>}')
})

t.test('on one Redis: claim once, replace what it holds, keep the expiry', async t => {
  const server = await TestRedis.start()
  t.teardown(() => server.stop())
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const store = new RedisIdempotencyStore(redis, 'p:')
  t.equal(await store.claim('k', 'a', 60000), null)
  t.equal(await store.claim('k', 'b', 60000), 'a')
  t.equal(await redis.get('p:idem:{k}'), 'a')
  const ttl = await redis.pttl('p:idem:{k}')
  t.ok(ttl > 59000 && ttl <= 60000, `expires in ${ttl} ms`)
  t.equal(await store.replace('k', 'x', 'b'), false)
  t.equal(await store.replace('k', 'a', 'b'), true)
  t.equal(await redis.get('p:idem:{k}'), 'b')
  t.ok(await redis.pttl('p:idem:{k}') > 59000, 'the expiry is kept')
  t.equal(await store.replace('k', 'b', null), true)
  t.equal(await redis.exists('p:idem:{k}'), 0)
  t.equal(await store.replace('k', 'b', 'c'), false, 'a deleted key is not recreated')
  t.equal(await redis.exists('p:idem:{k}'), 0)

  t.equal(await store.claim('short', 'a', 50), null)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(await store.claim('short', 'b', 50), null, 'expired')

  // Two instances, two connections: one publish for concurrent requests with one key.
  const other = new Redis(server.url)
  t.teardown(() => other.disconnect())
  const instances = [redis, other].map(r => new Idempotency({ store: new RedisIdempotencyStore(r, 'p:'), windowMs: 60000, pollMs: 10, onError: err => { throw err } }))
  let calls = 0
  const publish = async (): Promise<Answer> => {
    calls++
    await new Promise(resolve => setTimeout(resolve, 50))
    return { statusCode: 202, body: { ids: ['1-0'], fanout: 'cluster' } }
  }
  const answers = await Promise.all([...instances, ...instances].map(async idem => await idem.run('shared', 'f', publish)))
  t.equal(calls, 1)
  t.same(answers.map(a => a.body), Array(4).fill({ ids: ['1-0'], fanout: 'cluster' }))
  t.equal(answers.filter(a => a.replayed === true).length, 3)
})

t.test('on a Redis Cluster: each key is one slot, on the master serving it', async t => {
  const cluster = await startCluster(t)
  const client = new Cluster(cluster.startupNodes)
  t.teardown(() => client.disconnect())
  const store = new RedisIdempotencyStore(client, 'p:')
  const masters = new Set<number>()
  for (let i = 0; i < 30; i++) {
    const key = `key-${i}`
    t.equal(await store.claim(key, 'a', 60000), null)
    t.equal(await store.claim(key, 'b', 60000), 'a')
    t.equal(await store.replace(key, 'a', 'done'), true)
    const port = await cluster.masterForSlot(keySlot(idempotencyKey('p:', key)))
    masters.add(port)
    t.equal(await cluster.command(port, 'GET', idempotencyKey('p:', key)), 'done', `${key} on its slot's master`)
  }
  t.equal(masters.size, 3, 'keys spread over every master')
})
