// The single-instance store: claim once, replace only what one holds, expiry, the bound.
import t from 'tap'
import { MemoryIdempotencyStore } from '../../../src/idempotency/memory-store.js'

t.test('claim sets a key once and returns what it holds after', async t => {
  const store = new MemoryIdempotencyStore()
  t.equal(await store.claim('k', 'a', 1000), null)
  t.equal(await store.claim('k', 'b', 1000), 'a')
  t.equal(store.size, 1)
})

t.test('replace changes or deletes a record only if it still holds the expected one', async t => {
  const store = new MemoryIdempotencyStore()
  await store.claim('k', 'a', 1000)
  t.equal(await store.replace('k', 'x', 'b'), false)
  t.equal(await store.replace('k', 'a', 'b'), true)
  t.equal(await store.claim('k', 'c', 1000), 'b')
  t.equal(await store.replace('k', 'b', null), true)
  t.equal(store.size, 0)
  t.equal(store.bytes, 0)
  t.equal(await store.replace('gone', 'a', 'b'), false)
  t.equal(await store.claim('k', 'c', 1000), null, 'a deleted key can be claimed again')
})

t.test('records expire ttl after their claim, a replace keeping the expiry', async t => {
  let now = 1000
  const store = new MemoryIdempotencyStore(1024 * 1024, () => now)
  await store.claim('k', 'a', 100)
  now += 50
  await store.replace('k', 'a', 'b')
  now += 49
  t.equal(await store.claim('k', 'c', 100), 'b')
  now += 1
  t.equal(await store.replace('k', 'b', 'd'), false, 'expired')
  t.equal(await store.claim('k', 'c', 100), null)
  await store.claim('other', 'x', 100)
  now += 100
  await store.claim('third', 'y', 100)
  t.equal(store.size, 1, 'expired records are dropped as new ones come')
})

t.test('past its size the oldest records are forgotten first', async t => {
  const store = new MemoryIdempotencyStore(1000)
  for (let i = 0; i < 20; i++) await store.claim(`k${i}`, 'r'.repeat(100), 60000)
  t.ok(store.bytes <= 1000, `${store.bytes} bytes`)
  t.ok(store.size >= 4 && store.size < 20, `${store.size} kept`)
  t.equal(await store.claim('k19', 'new', 60000), 'r'.repeat(100), 'the newest is kept')
  t.equal(await store.claim('k0', 'new', 60000), null, 'the oldest is gone')
  const huge = new MemoryIdempotencyStore(10)
  t.equal(await huge.claim('k', 'a record larger than the bound', 60000), null)
  t.equal(await huge.claim('k', 'b', 60000), 'a record larger than the bound', 'a record over the bound is still kept while it is the only one')
})
