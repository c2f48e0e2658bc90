// The idempotency plugin: the memory store in single-instance mode, Redis when configured,
// and a request with a key refused (503, nothing published) while Redis is unreachable.
import t from 'tap'
import { Redis } from 'ioredis'
import { Idempotency } from '../../src/idempotency/idempotency.js'
import { notify, openStream, startInstance } from '../helpers/instance.js'
import { freePort, TestRedis } from '../helpers/redis.js'

t.test('single-instance mode: the keys live in memory', async t => {
  const { app, url } = await startInstance(t)
  t.ok(app.idempotency instanceof Idempotency)
  const first = await notify(url, { data: 1 }, { 'idempotency-key': 'k' })
  t.same((await notify(url, { data: 1 }, { 'idempotency-key': 'k' })).body, first.body)
})

t.test('with Redis: the keys live there, under the prefix', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const { url } = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: 'ip:' })
  const first = await notify(url, { data: 1 }, { 'idempotency-key': 'k' })
  t.equal(first.status, 202)
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  t.match(JSON.parse((await admin.get('ip:idem:{k}'))!), { state: 'done', statusCode: 202, body: first.body })
})

t.test('Redis unreachable: a request with a key gets 503 and publishes nothing; one without is delivered here', async t => {
  const { url } = await startInstance(t, { REDIS_URL: `redis://127.0.0.1:${await freePort()}` })
  const c = await openStream(t, `${url}/stream`)
  const keyed = await notify(url, { data: 'keyed' }, { 'idempotency-key': 'k' })
  t.equal(keyed.status, 503)
  t.equal(keyed.headers.get('retry-after'), '1')
  t.match(keyed.body.message, /the Idempotency-Key cannot be checked \(.+\): nothing was published, retry later/)
  const plain = await notify(url, { data: 'plain' })
  t.equal(plain.status, 202)
  t.equal(plain.body.fanout, 'local')
  await c.untilEvents(1)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(c.events.map(e => e.data), ['plain'])
})
