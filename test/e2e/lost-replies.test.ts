// A publish whose reply never comes, on one redis-server: the connection closes after
// Redis ran it, or before Redis read it. The instance settles it from the log once its
// deadline has passed (src/bus/redis-scripts.ts, SETTLE_SCRIPT): the publisher is told
// what happened, and an outbox never publishes an event twice.
import t from 'tap'
import { Redis } from 'ioredis'
import { notify, openStream } from '../helpers/instance.js'
import { linkedPair } from '../helpers/link.js'
import { until } from '../helpers/wait.js'

const prefix = (): string => `lr${Math.random().toString(36).slice(2, 8)}:`

async function health (url: string): Promise<any> {
  return await (await fetch(`${url}/health`)).json()
}

t.test('the reply lost after Redis ran the publish: answered 202 with its id, delivered once, replayed once', async t => {
  const p = prefix()
  const { redis, link, a, b } = await linkedPair(t, p)
  const onB = await openStream(t, `${b.url}/stream?topic=r`)
  const first = await notify(a.url, { topic: 'r', data: 'first' })
  t.equal(first.body.fanout, 'cluster', JSON.stringify(first.body))

  link.loseReplyTo = 'data: lost\n'
  const started = Date.now()
  const lost = await notify(a.url, { topic: 'r', data: 'lost' })
  t.equal(lost.status, 202, JSON.stringify(lost.body))
  t.equal(lost.body.fanout, 'cluster')
  t.equal(link.loseReplyTo, null, 'its reply was lost')
  t.ok(Date.now() - started < 8000, `answered in ${Date.now() - started} ms (its deadline is 3 s after it was sent)`)
  const r = new Redis(redis.url)
  t.teardown(() => r.disconnect())
  const entries = await r.xrange(`${p}{r}`, '-', '+')
  t.equal(entries.length, 2, 'in the log once')
  t.equal(lost.body.id, entries[1][0], 'the id is its position')

  await onB.untilEvents(2)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same(onB.events.map(e => [e.data, e.id]), [['first', first.body.id], ['lost', lost.body.id]], 'B\'s client: once, with that id')
  const resumed = await openStream(t, `${a.url}/stream?topic=r`, { 'last-event-id': first.body.id })
  await resumed.untilEvents(1)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same(resumed.events.map(e => e.data), ['lost'], 'a resume after the first: the lost one, once')
})

t.test('the publish lost before Redis read it: answered 503 "not published", delivered nowhere; the retry is delivered once', async t => {
  const p = prefix()
  const { link, a, b } = await linkedPair(t, p)
  const onB = await openStream(t, `${b.url}/stream?topic=n`)
  const first = await notify(a.url, { topic: 'n', data: 'first' })
  t.equal(first.body.fanout, 'cluster', JSON.stringify(first.body))

  link.loseNextCommand = true
  const lost = await notify(a.url, [{ topic: 'n', data: 'lost 1' }, { topic: 'n', data: 'lost 2' }])
  t.equal(lost.status, 503, JSON.stringify(lost.body))
  t.match(lost.body.message, /the events were not published: a retry cannot deliver them twice/)
  await until(async () => (await health(a.url)).status === 'ok', 10000, 'A connected again')
  const retry = await notify(a.url, [{ topic: 'n', data: 'lost 1' }, { topic: 'n', data: 'lost 2' }])
  t.equal(retry.status, 202, JSON.stringify(retry.body))
  await onB.untilEvents(3)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same(onB.events.map(e => e.data), ['first', 'lost 1', 'lost 2'], 'each once: the retry only')
})

t.test('an Idempotency-Key retry after a lost reply gets the settled answer, and publishes nothing again', async t => {
  const p = prefix()
  const { link, a, b } = await linkedPair(t, p)
  const onB = await openStream(t, `${b.url}/stream?topic=k`)
  await notify(a.url, { topic: 'k', data: 'first' })
  link.loseReplyTo = 'data: keyed\n'
  const lost = await notify(a.url, { topic: 'k', data: 'keyed' }, { 'idempotency-key': 'lost-reply-1' })
  t.equal(lost.status, 202, JSON.stringify(lost.body))
  t.equal(link.loseReplyTo, null, 'its reply was lost')
  const retry = await notify(b.url, { topic: 'k', data: 'keyed' }, { 'idempotency-key': 'lost-reply-1' })
  t.equal(retry.status, 202, JSON.stringify(retry.body))
  t.equal(retry.headers.get('idempotent-replayed'), 'true')
  t.same(retry.body.ids, lost.body.ids, 'the same id')
  await onB.untilEvents(2)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same(onB.events.map(e => e.data), ['first', 'keyed'], 'once')
})

t.test('the outbox after an outage, its first call\'s reply lost: every event reaches the other instance once', async t => {
  const p = prefix()
  const { link, a, b } = await linkedPair(t, p)
  const onB = await openStream(t, `${b.url}/stream?topic=o`)
  const onA = await openStream(t, `${a.url}/stream?topic=o`)
  await notify(a.url, { topic: 'o', data: 'e0' })
  await onB.untilEvents(1)
  await link.cut()
  await until(async () => (await health(a.url)).status !== 'ok', 10000, 'A degraded')
  for (const data of ['o1', 'o2', 'o3']) {
    const res = await notify(a.url, { topic: 'o', data })
    t.equal(res.body.fanout, 'local', JSON.stringify(res.body))
  }
  link.loseReplyTo = 'data: o1\n'
  await link.restore()
  await onB.untilEvents(4, 20000)
  await until(async () => (await health(a.url)).status === 'ok', 15000, 'A ok, its outbox published')
  await new Promise(resolve => setTimeout(resolve, 500))
  t.same(onB.events.map(e => e.data), ['e0', 'o1', 'o2', 'o3'], 'B\'s client: each once, in order')
  t.same(onA.events.map(e => e.data), ['e0', 'o1', 'o2', 'o3'], 'A\'s client: each once (delivered at once, not again)')
  t.equal(link.loseReplyTo, null, 'the reply to o1\'s call was lost')
})
