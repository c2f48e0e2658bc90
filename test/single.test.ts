// Single-instance mode (no REDIS_URL): streaming, publishing, validation, resume, limits.
import t from 'tap'
import { notify, SseClient, startInstance } from './helpers/instance.js'

t.test('a stream opens at once with the SSE headers, retry line and comment', async t => {
  const { app, url } = await startInstance({ RETRY_MS: 1234 })
  t.teardown(() => app.close())
  const c = await SseClient.open(`${url}/stream?topic=orders`)
  t.teardown(() => c.close())
  t.equal(c.status, 200)
  t.match(c.headers['content-type'], /^text\/event-stream/)
  t.equal(c.headers['cache-control'], 'no-cache')
  t.equal(c.headers['x-accel-buffering'], 'no')
  await c.until(x => x.raw.includes('\n\n'), 2000, 'first bytes')
  t.ok(c.raw.startsWith('retry: 1234\n:'), 'retry line and a comment come first')
})

t.test('POST /notify reaches subscribers of its topic, broadcasts reach all', async t => {
  const { app, url } = await startInstance()
  t.teardown(() => app.close())
  const orders = await SseClient.open(`${url}/stream?topic=orders`)
  const both = await SseClient.open(`${url}/stream?topic=orders&topic=users`)
  const users = await SseClient.open(`${url}/stream?topic=users`)
  t.teardown(() => { orders.close(); both.close(); users.close() })

  const one = await notify(url, { topic: 'orders', event: 'created', data: { id: 42 } })
  t.equal(one.status, 202)
  t.equal(one.body.fanout, 'local')
  t.type(one.body.id, 'string')
  const multi = await notify(url, { topic: ['orders', 'users'], data: 'both' })
  const bcast = await notify(url, { data: 'everyone' })
  t.equal(bcast.status, 202)

  await orders.untilEvents(3)
  await both.untilEvents(3)
  await users.untilEvents(2)
  t.same(orders.events, [
    { id: one.body.id, event: 'created', data: '{"id":42}' },
    { id: multi.body.id, data: 'both' },
    { id: bcast.body.id, data: 'everyone' }
  ])
  t.same(both.events.map(e => e.data), ['{"id":42}', 'both', 'everyone'], 'an event on two of its topics arrives once')
  t.same(users.events.map(e => e.data), ['both', 'everyone'])
})

t.test('a batch is published in order and answered with every id', async t => {
  const { app, url } = await startInstance()
  t.teardown(() => app.close())
  const c = await SseClient.open(`${url}/stream?topic=t`)
  t.teardown(() => c.close())
  const batch = Array.from({ length: 50 }, (_, i) => ({ topic: 't', data: i }))
  const res = await notify(url, batch)
  t.equal(res.status, 202)
  t.equal(res.body.ids.length, 50)
  t.equal(res.body.id, undefined)
  await c.untilEvents(50)
  t.same(c.events.map(e => Number(e.data)), batch.map(e => e.data))
  t.same(c.events.map(e => e.id), res.body.ids)
})

t.test('bad requests get 400/413/415 naming the problem, and publish nothing', async t => {
  const { app, url } = await startInstance({ BODY_LIMIT_BYTES: 2048, MAX_BATCH: 3 })
  t.teardown(() => app.close())
  const c = await SseClient.open(`${url}/stream?topic=t`)
  t.teardown(() => c.close())
  const cases: Array<[unknown, number, RegExp]> = [
    [{ topic: 't' }, 400, /body must have the property 'data'/],
    [{ topic: 't', data: 1, extra: true }, 400, /unknown property 'extra'/],
    [{ topic: 'bad topic', data: 1 }, 400, /body\.topic must be 1-128 characters/],
    [{ topic: ['t', 'x*'], data: 1 }, 400, /body\.topic\[1\] must be 1-128 characters/],
    [{ topic: 5, data: 1 }, 400, /body\.topic must be a topic name or an array/],
    [{ topic: [], data: 1 }, 400, /body\.topic must have at least 1/],
    [{ topic: 't', event: 'a\nid: 1', data: 1 }, 400, /body\.event must be 1-64 characters/],
    [[{ topic: 't', data: 1 }, { topic: 't' }], 400, /body\[1\] must have the property 'data'/],
    [[{ data: 1 }, { data: 2 }, { data: 3 }, { data: 4 }], 400, /body must have at most 3 items/],
    [[], 400, /body must have at least 1 item/],
    ['{"topic":"t",', 400, /JSON/],
    [{ topic: 't', data: 'x'.repeat(3000) }, 413, /too large/i]
  ]
  for (const [body, status, message] of cases) {
    const res = await notify(url, body)
    t.equal(res.status, status, `${JSON.stringify(body).slice(0, 60)} -> ${status}`)
    t.match(res.body.message, message)
  }
  const wrongType = await fetch(`${url}/notify`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' })
  t.equal(wrongType.status, 415)
  const ok = await notify(url, { topic: 't', data: 'after' })
  t.equal(ok.status, 202)
  await c.untilEvents(1)
  t.same(c.events.map(e => e.data), ['after'], 'none of the rejected requests reached the client')
})

t.test('bad stream requests get 400 naming the problem', async t => {
  const { app, url } = await startInstance({ MAX_TOPICS_PER_STREAM: 2 })
  t.teardown(() => app.close())
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
  const { app, url } = await startInstance()
  t.teardown(() => app.close())
  const first = await SseClient.open(`${url}/stream?topic=r`)
  await notify(url, { topic: 'r', data: 'a' })
  await first.untilEvents(1)
  first.close()
  const seen = first.lastEventId!
  await notify(url, [{ topic: 'r', data: 'b' }, { topic: 'other', data: 'skip' }, { data: 'c' }])
  const header = await SseClient.open(`${url}/stream?topic=r`, { 'last-event-id': seen })
  const query = await SseClient.open(`${url}/stream?topic=r&lastEventId=${seen}`)
  t.teardown(() => { header.close(); query.close() })
  await notify(url, { topic: 'r', data: 'd' })
  await header.untilEvents(3)
  await query.untilEvents(3)
  t.same(header.events.map(e => e.data), ['b', 'c', 'd'])
  t.same(query.events.map(e => e.data), ['b', 'c', 'd'])
})

t.test('resume from before the history gets a reset event', async t => {
  const { app, url } = await startInstance({ HISTORY_SIZE: 2 })
  t.teardown(() => app.close())
  const a = await notify(url, { topic: 'h', data: 1 })
  await notify(url, [{ topic: 'h', data: 2 }, { topic: 'h', data: 3 }, { topic: 'h', data: 4 }])
  const c = await SseClient.open(`${url}/stream?topic=h`, { 'last-event-id': a.body.id })
  t.teardown(() => c.close())
  await c.untilEvents(3)
  t.equal(c.events[0].event, 'reset', 'the gap is announced first')
  t.same(c.events.slice(1).map(e => e.data), ['3', '4'], 'then what history still holds')
  const fresh = await SseClient.open(`${url}/stream?topic=h`, { 'last-event-id': c.lastEventId! })
  t.teardown(() => fresh.close())
  await notify(url, { topic: 'h', data: 5 })
  await fresh.untilEvents(1)
  t.same(fresh.events.map(e => e.data), ['5'], 'resuming from the last replayed id has no gap')
})

t.test('MAX_CLIENTS answers 503 with Retry-After', async t => {
  const { app, url } = await startInstance({ MAX_CLIENTS: 2 })
  t.teardown(() => app.close())
  const a = await SseClient.open(`${url}/stream`)
  const b = await SseClient.open(`${url}/stream`)
  t.teardown(() => { a.close(); b.close() })
  const res = await fetch(`${url}/stream`)
  t.equal(res.status, 503)
  t.ok(Number(res.headers.get('retry-after')) >= 1)
  t.match((await res.json()).message, /MAX_CLIENTS/)
})

t.test('idle streams get heartbeats; named heartbeat events when configured', async t => {
  const { app, url } = await startInstance({ HEARTBEAT_INTERVAL_MS: 100 })
  const named = await startInstance({ HEARTBEAT_INTERVAL_MS: 100, HEARTBEAT_EVENT: 'ping' })
  t.teardown(async () => { await app.close(); await named.app.close() })
  const c = await SseClient.open(`${url}/stream`)
  const n = await SseClient.open(`${named.url}/stream`)
  t.teardown(() => { c.close(); n.close() })
  await c.until(x => x.comments.includes('heartbeat'), 3000, 'a heartbeat comment')
  await n.until(x => x.events.some(e => e.event === 'ping'), 3000, 'a ping event')
  t.equal(n.events[0].id, undefined, 'a heartbeat has no id, so it does not move Last-Event-ID')
})

t.test('health and metrics', async t => {
  const { app, url } = await startInstance()
  t.teardown(() => app.close())
  const c = await SseClient.open(`${url}/stream?topic=m`)
  t.teardown(() => c.close())
  await notify(url, { topic: 'm', data: 1 })
  await c.untilEvents(1)
  const health = await (await fetch(`${url}/health`)).json()
  t.match(health, { status: 'ok', mode: 'single', redis: { configured: false, connected: false }, clients: 1 })
  t.type(health.instanceId, 'string')
  const text = await (await fetch(`${url}/metrics`)).text()
  t.match(text, /^sse_clients 1$/m)
  t.match(text, /^sse_events_published_total\{fanout="local"\} 1$/m)
  t.match(text, /^sse_events_delivered_total 1$/m)
  t.match(text, /^sse_redis_connected 0$/m)
  t.match(text, /^sse_slow_clients_disconnected_total 0$/m)
  t.match(text, /^sse_events_replayed_total 0$/m)
  t.match(text, /http_requests_total\{method="POST",route="\/notify",status="202"\} 1/)
})

t.test('app.close() ends open streams cleanly and resolves', async t => {
  const { app, url } = await startInstance()
  const clients = await Promise.all([1, 2, 3].map(() => SseClient.open(`${url}/stream?topic=s`)))
  await app.close()
  for (const c of clients) await c.until(x => x.ended, 2000, 'stream end')
  t.ok(clients.every(c => c.ended), 'every stream ended')
  const after = await fetch(`${url}/health`).catch(() => null)
  t.equal(after, null, 'no longer accepting connections')
})
