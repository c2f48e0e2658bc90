// Three instances sharing one real redis-server: exactly once, same order everywhere.
import { EventSource } from 'eventsource'
import t, { type Test } from 'tap'
import { compareIds } from '../../src/event-id.js'
import { notify, openStream, SseClient, startInstance, type Instance } from '../helpers/instance.js'
import { TestRedis } from '../helpers/redis.js'

const redis = await TestRedis.start()
t.teardown(() => redis.stop())

async function cluster (t: Test, n: number, config: Record<string, unknown> = {}): Promise<Instance[]> {
  const prefix = `c${Math.random().toString(36).slice(2, 8)}:`
  return Promise.all(Array.from({ length: n }, () => startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix, ...config })))
}

t.test('an event posted to any instance reaches clients of every instance exactly once, in one order', async t => {
  const nodes = await cluster(t, 3)
  for (const n of nodes) {
    const health = await (await fetch(`${n.url}/health`)).json()
    t.match(health, { status: 'ok', mode: 'cluster', redis: { configured: true, connected: true } })
  }
  // Two raw clients per instance on topic "orders", one on "orders"+"users".
  const clients: SseClient[] = []
  for (const n of nodes) {
    clients.push(await openStream(t, `${n.url}/stream?topic=orders`))
    clients.push(await openStream(t, `${n.url}/stream?topic=orders&topic=users`))
  }
  // A real EventSource client on instance 2.
  const esEvents: Array<{ id: string, data: string }> = []
  const es = new EventSource(`${nodes[2].url}/stream?topic=orders`)
  t.teardown(() => es.close())
  es.addEventListener('created', e => esEvents.push({ id: e.lastEventId, data: e.data }))
  await new Promise<void>((resolve, reject) => { es.onopen = () => resolve(); es.onerror = reject })

  // 20 rounds; in each, all three instances publish at once (overlapping), some to two topics.
  const ids: string[] = []
  for (let round = 0; round < 20; round++) {
    const results = await Promise.all(nodes.map((n, i) => notify(n.url, {
      topic: i === 1 ? ['orders', 'users'] : 'orders',
      event: 'created',
      data: { round, from: i }
    })))
    for (const r of results) {
      t.equal(r.status, 202)
      t.equal(r.body.fanout, 'cluster')
      ids.push(r.body.id)
    }
  }
  t.equal(new Set(ids).size, 60, 'every event got its own id')
  for (const c of clients) await c.untilEvents(60)
  await new Promise(resolve => setTimeout(resolve, 200)) // time for any duplicate to show up
  // A one-topic stream's ids are the topic's positions, the same on every instance; a
  // two-topic stream's ids are cursors over both, so its events are compared by content.
  const reference = clients[0].events.map(e => e.id)
  const order = clients[0].events.map(e => e.data)
  t.same([...reference].sort(), [...ids].sort(), 'the first client got every event')
  for (const [i, c] of clients.entries()) {
    t.equal(c.events.length, 60, `client ${i} got each event exactly once`)
    t.same(c.events.map(e => e.data), order, `client ${i} saw the same order`)
    if (i % 2 === 0) t.same(c.events.map(e => e.id), reference, `client ${i} saw the same ids`)
  }
  t.same(esEvents.map(e => e.id), reference, 'the EventSource client saw the same events in the same order')
  const sorted = [...reference].sort((a, b) => compareIds(a!, b!))
  t.same(reference, sorted, 'delivery order is id order')
})

t.test('batches that fill several script calls in one turn keep their order and their bytes', async t => {
  const nodes = await cluster(t, 2)
  const a = await openStream(t, `${nodes[0].url}/stream?topic=big`)
  const b = await openStream(t, `${nodes[1].url}/stream?topic=big&topic=other`)
  // Three batches of 200 sent at once: 600 events in one turn, past one call's 256.
  // Payloads with line breaks, multi-byte characters and the record separator itself.
  const datum = (batch: number, i: number): string => `b${batch} #${i}\nzweite Zeile: ü → 🚀\n\n${'x'.repeat(i % 7)}`
  const results = await Promise.all([0, 1, 2].map(batch => notify(nodes[0].url, Array.from({ length: 200 }, (_, i) => ({
    topic: i % 10 === 0 ? ['big', 'other'] : 'big',
    event: 'e',
    data: datum(batch, i)
  })))))
  for (const r of results) t.equal(r.status, 202)
  const ids = results.flatMap(r => r.body.ids as string[])
  t.equal(new Set(ids).size, 600, 'every event got its own id')
  t.same(ids, [...ids].sort(compareIds), 'ids follow the order the batches were sent in')
  for (const c of [a, b]) await c.untilEvents(600)
  await new Promise(resolve => setTimeout(resolve, 100))
  const sent = [0, 1, 2].flatMap(batch => Array.from({ length: 200 }, (_, i) => datum(batch, i)))
  t.same(a.events.map(e => e.id), ids, 'in id order')
  for (const c of [a, b]) {
    t.equal(c.events.length, 600, 'each event once')
    // SSE turns the payload's line breaks into data: lines and back.
    t.same(c.events.map(e => e.data), sent, 'byte for byte')
  }
  // The history holds the same bytes: resume from the middle of the second batch.
  const resumed = await openStream(t, `${nodes[1].url}/stream?topic=big`, { 'last-event-id': ids[299] })
  await resumed.untilEvents(300)
  t.same(resumed.events.map(e => e.data), sent.slice(300), 'the rest, from history')
})

t.test('broadcasts reach every client on every instance', async t => {
  const nodes = await cluster(t, 3)
  const clients = await Promise.all(nodes.flatMap(n => [
    openStream(t, `${n.url}/stream`),
    openStream(t, `${n.url}/stream?topic=anything`)
  ]))
  const res = await notify(nodes[1].url, [{ data: 'hello all' }, { topic: 'nobody', data: 'x' }])
  t.equal(res.status, 202)
  for (const c of clients) await c.untilEvents(1)
  await new Promise(resolve => setTimeout(resolve, 100))
  // A stream's cursor lists its topics, then the broadcasts: a stream without topics has
  // the broadcast's position as id, one with a topic '.' and then it.
  for (const [i, c] of clients.entries()) t.same(c.events, [{ id: i % 2 === 0 ? res.body.ids[0] : `.${res.body.ids[0]}`, data: 'hello all' }])
})

t.test('a client that missed 100 events resumes on another instance with no gap and no duplicate', async t => {
  const nodes = await cluster(t, 2)
  const first = await SseClient.open(`${nodes[0].url}/stream?topic=r`)
  await notify(nodes[0].url, { topic: 'r', data: 0 })
  await first.untilEvents(1)
  first.close()
  for (let i = 1; i <= 100; i++) await notify(nodes[i % 2].url, { topic: 'r', data: i })
  const resumed = await openStream(t, `${nodes[1].url}/stream?topic=r`, { 'last-event-id': first.lastEventId! })
  // Publishes racing with the replay must land after it, once.
  const racing = Promise.all([101, 102, 103].map(i => notify(nodes[i % 2].url, { topic: 'r', data: i })))
  await racing
  await resumed.untilEvents(103)
  await new Promise(resolve => setTimeout(resolve, 200))
  t.same(resumed.events.map(e => Number(e.data)).slice(0, 100), Array.from({ length: 100 }, (_, i) => i + 1), 'the 100 missed events, in order')
  t.same(resumed.events.map(e => Number(e.data)).slice(100).sort(), [101, 102, 103], 'then the racing ones')
  t.equal(resumed.events.length, 103, 'nothing twice')
})

t.test('resume from an id older than the history gets the reset event', async t => {
  const nodes = await cluster(t, 2, { HISTORY_SIZE: 5 })
  const first = await notify(nodes[0].url, { topic: 'g', data: 0 })
  for (let i = 1; i <= 10; i++) await notify(nodes[0].url, { topic: 'g', data: i })
  const c = await openStream(t, `${nodes[1].url}/stream?topic=g`, { 'last-event-id': first.body.id })
  await c.untilEvents(6)
  t.equal(c.events[0].event, 'reset')
  t.same(c.events.slice(1).map(e => Number(e.data)), [6, 7, 8, 9, 10])
  const unknown = await openStream(t, `${nodes[1].url}/stream?topic=g`, { 'last-event-id': '99999999999999-0' })
  await unknown.untilEvents(1)
  t.equal(unknown.events[0].event, 'reset', 'an id from the future is unknown: reset')
})

t.test('a log whose positions go back (Redis lost it, its clock behind) ends its streams, and resuming says so', async t => {
  const prefix = `back${Math.random().toString(36).slice(2, 6)}:`
  const nodes = await Promise.all([1, 2].map(() => startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })))
  const clients = await Promise.all(nodes.map(async n => await openStream(t, `${n.url}/stream?topic=b`)))
  const { Redis } = await import('ioredis')
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  await admin.xadd(`${prefix}{b}`, '99999999999999-0', 'u', '', 't', 'b', 'o', '', 'b', 'data: x\n\n') // positions jump far ahead...
  const ahead = await notify(nodes[0].url, { topic: 'b', data: 'ahead' })
  t.equal(ahead.body.id, '99999999999999-1')
  for (const c of clients) await c.untilEvents(1)
  await admin.flushdb() // ...then Redis loses the log, and positions come from its clock again
  const back = await notify(nodes[1].url, { topic: 'b', data: 'back' })
  t.ok(compareIds(back.body.id, ahead.body.id) < 0, 'the position went back')
  for (const c of clients) {
    await c.until(c => c.ended, 5000, 'the stream to end')
    t.same(c.events.map(e => e.data), ['ahead'], 'nothing delivered under a position that went back')
    const again = await openStream(t, `${nodes[0].url}/stream?topic=b`, { 'last-event-id': c.lastEventId! })
    await again.untilEvents(1)
    t.equal(again.events[0].event, 'reset', 'the resume is told of the loss')
    t.match(JSON.parse(again.events[0].data), { reason: 'history', topic: 'b' })
  }
})

t.test('Idempotency-Key: a retry on another instance gets the first answer, and every client the event once', async t => {
  const nodes = await cluster(t, 2)
  const clients = await Promise.all(nodes.map(async n => await openStream(t, `${n.url}/stream?topic=idem`)))
  const key = { 'idempotency-key': 'retry-elsewhere' }
  const first = await notify(nodes[0].url, { topic: 'idem', data: 'once' }, key)
  t.equal(first.status, 202)
  t.equal(first.body.fanout, 'cluster')
  const retry = await notify(nodes[1].url, { topic: 'idem', data: 'once' }, key)
  t.equal(retry.status, 202)
  t.same(retry.body, first.body, 'same ids, same fanout')
  t.equal(retry.headers.get('idempotent-replayed'), 'true')
  const other = await notify(nodes[1].url, { topic: 'idem', data: 'another body' }, key)
  t.equal(other.status, 422)
  // The same request on both instances at once: one publish, one answer.
  const together = await Promise.all(nodes.map(async n => await notify(n.url, [{ topic: 'idem', data: 'b1' }, { topic: 'idem', data: 'b2' }], { 'idempotency-key': 'at-once' })))
  t.same(together.map(r => r.status), [202, 202])
  t.same(together[0].body, together[1].body)
  for (const c of clients) await c.untilEvents(3)
  await new Promise(resolve => setTimeout(resolve, 300)) // time for any duplicate to show up
  for (const c of clients) {
    t.same(c.events.map(e => e.data), ['once', 'b1', 'b2'], 'each event once on every instance')
    t.same(c.events.map(e => e.id), [first.body.id, ...together[0].body.ids])
  }
  const { Redis } = await import('ioredis')
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  const prefix = nodes[0].app.config.REDIS_PREFIX
  t.ok(await admin.pttl(`${prefix}idem:{retry-elsewhere}`) > 3500000, 'kept in Redis for IDEMPOTENCY_WINDOW_MS')
})
