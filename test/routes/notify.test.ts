// POST /notify: delivery of one event, a broadcast, a batch; refusals that publish nothing.
import t from 'tap'
import { notify, openStream, startInstance } from '../helpers/instance.js'

t.test('POST /notify reaches subscribers of its topic, broadcasts reach all', async t => {
  const { url } = await startInstance(t)
  const orders = await openStream(t, `${url}/stream?topic=orders`)
  const both = await openStream(t, `${url}/stream?topic=orders&topic=users`)
  const users = await openStream(t, `${url}/stream?topic=users`)

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
    // The stream's cursor: its topic's position, then the broadcasts'.
    { id: `${multi.body.id}.${bcast.body.id}`, data: 'everyone' }
  ])
  t.same(both.events.map(e => e.data), ['{"id":42}', 'both', 'everyone'], 'an event on two of its topics arrives once')
  t.same(users.events.map(e => e.data), ['both', 'everyone'])
})

t.test('a batch is published in order and answered with every id', async t => {
  const { url } = await startInstance(t)
  const c = await openStream(t, `${url}/stream?topic=t`)
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
  const { url } = await startInstance(t, { BODY_LIMIT_BYTES: 2048, MAX_BATCH: 3 })
  const c = await openStream(t, `${url}/stream?topic=t`)
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

t.test('Idempotency-Key: a retry gets the first answer and publishes nothing', async t => {
  const { url } = await startInstance(t)
  const c = await openStream(t, `${url}/stream?topic=t`)
  const key = { 'idempotency-key': 'order-42-created' }
  const first = await notify(url, { topic: 't', data: 'once' }, key)
  t.equal(first.status, 202)
  t.equal(first.headers.get('idempotent-replayed'), null)
  const retry = await notify(url, { topic: 't', data: 'once' }, key)
  t.equal(retry.status, 202)
  t.same(retry.body, first.body, 'same ids, same fanout')
  t.equal(retry.headers.get('idempotent-replayed'), 'true')
  // A batch, and two at once: one publish.
  const batch = [{ topic: 't', data: 'b1' }, { topic: 't', data: 'b2' }]
  const both = await Promise.all([notify(url, batch, { 'idempotency-key': 'batch-1' }), notify(url, batch, { 'idempotency-key': 'batch-1' })])
  t.same(both.map(r => r.status), [202, 202])
  t.same(both[0].body, both[1].body)
  t.equal(both[0].body.ids.length, 2)
  const after = await notify(url, { topic: 't', data: 'after' })
  await c.untilEvents(4)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(c.events.map(e => e.data), ['once', 'b1', 'b2', 'after'], 'each event once')
  t.same(c.events.map(e => e.id), [first.body.id, ...both[0].body.ids, after.body.id])
})

t.test('Idempotency-Key: another body under the key is 422, a bad key 400; neither publishes', async t => {
  const { url } = await startInstance(t)
  const c = await openStream(t, `${url}/stream?topic=t`)
  t.equal((await notify(url, { topic: 't', data: 1 }, { 'idempotency-key': 'k' })).status, 202)
  for (const body of [{ topic: 't', data: 2 }, { topic: 'u', data: 1 }, [{ topic: 't', data: 1 }]]) {
    const res = await notify(url, body, { 'idempotency-key': 'k' })
    t.equal(res.status, 422, JSON.stringify(body))
    t.match(res.body, { statusCode: 422, error: 'Unprocessable Entity', message: /Idempotency-Key was used for a request with a different body/ })
  }
  for (const bad of ['', 'a b', 'x'.repeat(129), 'caf\u00e9']) {
    const res = await notify(url, { topic: 't', data: 'bad key' }, { 'idempotency-key': bad })
    t.equal(res.status, 400, JSON.stringify(bad))
    t.match(res.body.message, /Idempotency-Key header must be 1-128 visible ASCII characters/)
  }
  // An invalid body with a key: 400 as without one, and the key stays free.
  t.equal((await notify(url, { topic: 't' }, { 'idempotency-key': 'k2' })).status, 400)
  t.equal((await notify(url, { topic: 't', data: 'k2' }, { 'idempotency-key': 'k2' })).status, 202)
  await c.untilEvents(2)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(c.events.map(e => e.data), ['1', 'k2'])
})

t.test('Idempotency-Key: after IDEMPOTENCY_WINDOW_MS the key is forgotten', async t => {
  const { url } = await startInstance(t, { IDEMPOTENCY_WINDOW_MS: 1000 })
  const c = await openStream(t, `${url}/stream?topic=t`)
  const key = { 'idempotency-key': 'k' }
  const first = await notify(url, { topic: 't', data: 'x' }, key)
  t.same((await notify(url, { topic: 't', data: 'x' }, key)).body, first.body, 'within the window')
  await new Promise(resolve => setTimeout(resolve, 1100))
  const later = await notify(url, { topic: 't', data: 'x' }, key)
  t.equal(later.status, 202)
  t.equal(later.headers.get('idempotent-replayed'), null)
  t.not(later.body.id, first.body.id, 'published again')
  await c.untilEvents(2)
})
