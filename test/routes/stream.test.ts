// GET /stream: headers and first bytes, refusals, resume, MAX_CLIENTS.
import t from 'tap'
import { notify, openStream, SseClient, startInstance } from '../helpers/instance.js'

t.test('a stream opens at once with the SSE headers, retry line and comment', async t => {
  const { url } = await startInstance(t, { RETRY_MS: 1234 })
  const c = await openStream(t, `${url}/stream?topic=orders`)
  t.equal(c.status, 200)
  t.match(c.headers['content-type'], /^text\/event-stream/)
  t.equal(c.headers['cache-control'], 'no-cache')
  t.equal(c.headers['x-accel-buffering'], 'no')
  await c.until(x => x.raw.includes('\n\n'), 2000, 'first bytes')
  t.ok(c.raw.startsWith('retry: 1234\n:'), 'retry line and a comment come first')
})

t.test('bad stream requests get 400 naming the problem', async t => {
  const { url } = await startInstance(t, { MAX_TOPICS_PER_STREAM: 2 })
  for (const [query, message] of [
    ['topic=a%20b', /topic "a b" is invalid/],
    ['topic=', /topic "" is invalid/],
    ['topic=a&topic=b&topic=c', /at most 2 topic/],
    ['topic=' + 'x'.repeat(129), /is invalid: 1-128/],
    ['topic=a&lastEventId=garbage', /Last-Event-ID/]
  ] as const) {
    const res = await fetch(`${url}/stream?${query}`)
    t.equal(res.status, 400, query)
    t.match((await res.json()).message, message)
  }
  const res = await fetch(`${url}/stream?topic=a`, { headers: { 'last-event-id': '1-0 id: 2' } })
  t.equal(res.status, 400, 'a Last-Event-ID header that is not an id is refused')
})

t.test('resume with Last-Event-ID or lastEventId replays missed events, then goes live', async t => {
  const { url } = await startInstance(t)
  const first = await SseClient.open(`${url}/stream?topic=r`)
  await notify(url, { topic: 'r', data: 'a' })
  await first.untilEvents(1)
  first.close()
  const seen = first.lastEventId!
  await notify(url, [{ topic: 'r', data: 'b' }, { topic: 'other', data: 'skip' }, { data: 'c' }])
  const header = await openStream(t, `${url}/stream?topic=r`, { 'last-event-id': seen })
  const query = await openStream(t, `${url}/stream?topic=r&lastEventId=${seen}`)
  await notify(url, { topic: 'r', data: 'd' })
  await header.untilEvents(3)
  await query.untilEvents(3)
  t.same(header.events.map(e => e.data), ['b', 'c', 'd'])
  t.same(query.events.map(e => e.data), ['b', 'c', 'd'])
})

t.test('resume from before the history gets a reset event', async t => {
  const { url } = await startInstance(t, { HISTORY_SIZE: 2 })
  const a = await notify(url, { topic: 'h', data: 1 })
  await notify(url, [{ topic: 'h', data: 2 }, { topic: 'h', data: 3 }, { topic: 'h', data: 4 }])
  const c = await openStream(t, `${url}/stream?topic=h`, { 'last-event-id': a.body.id })
  await c.untilEvents(3)
  t.equal(c.events[0].event, 'reset', 'the gap is announced first')
  t.same(c.events.slice(1).map(e => e.data), ['3', '4'], 'then what history still holds')
  const fresh = await openStream(t, `${url}/stream?topic=h`, { 'last-event-id': c.lastEventId! })
  await notify(url, { topic: 'h', data: 5 })
  await fresh.untilEvents(1)
  t.same(fresh.events.map(e => e.data), ['5'], 'resuming from the last replayed id has no gap')
})

t.test('MAX_CLIENTS answers 503 with Retry-After', async t => {
  const { url } = await startInstance(t, { MAX_CLIENTS: 2 })
  await openStream(t, `${url}/stream`)
  await openStream(t, `${url}/stream`)
  const res = await fetch(`${url}/stream`)
  t.equal(res.status, 503)
  t.ok(Number(res.headers.get('retry-after')) >= 1)
  t.match((await res.json()).message, /MAX_CLIENTS/)
})
