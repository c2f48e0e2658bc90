// A client that stops reading is cut off at CLIENT_BUFFER_BYTES; the others get everything
// and it can resume from its last id. (Latency under load is measured in bench/.)
import t from 'tap'
import { notify, openStream, startInstance } from '../helpers/instance.js'

t.test('a client that stops reading is disconnected at the bound and resumes by id', async t => {
  // Bursts (one POST) stay well under the bound, so only a client that stops reading hits it.
  const { app, url } = await startInstance(t, { CLIENT_BUFFER_BYTES: 1 << 20, HISTORY_SIZE: 40000 })
  const slow = await openStream(t, `${url}/stream?topic=s`)
  const fast = await Promise.all([1, 2, 3].map(async () => await openStream(t, `${url}/stream?topic=s`)))
  await notify(url, { topic: 's', data: 'first' })
  await slow.untilEvents(1)
  slow.pauseReading()

  // ~30 MB per client: more than the kernel's socket buffers can hide.
  const payload = 'x'.repeat(1000)
  const total = 30000
  for (let sent = 1; sent < total; sent += 100) {
    const batch = Array.from({ length: Math.min(100, total - sent) }, (_, i) => ({ topic: 's', data: `${sent + i} ${payload}` }))
    t.equal((await notify(url, batch)).status, 202)
  }
  for (const c of fast) await c.untilEvents(total, 30000)
  for (const c of fast) t.same(c.events.map(e => Number(e.data.split(' ')[0]) || 0), Array.from({ length: total }, (_, i) => i), 'a fast client got every event in order')

  const metrics = await (await fetch(`${url}/metrics`)).text()
  t.match(metrics, /^sse_slow_clients_disconnected_total 1$/m, 'the slow client was disconnected')
  t.match(metrics, /^sse_clients 3$/m)
  t.equal(app.hub.size, 3)

  // It reads what it had buffered, sees the end, and resumes from its last id.
  slow.resumeReading()
  await slow.until(c => c.ended, 10000, 'the slow stream to end')
  t.ok(slow.events.length < total, `it had only ${slow.events.length} events`)
  const resumed = await openStream(t, `${url}/stream?topic=s`, { 'last-event-id': slow.lastEventId! })
  t.equal(resumed.status, 200)
  await resumed.untilEvents(total - slow.events.length, 30000)
  const all = [...slow.events, ...resumed.events].map(e => Number(e.data.split(' ')[0]) || 0)
  t.same(all, Array.from({ length: total }, (_, i) => i), 'after resuming it has every event once, in order')
})
