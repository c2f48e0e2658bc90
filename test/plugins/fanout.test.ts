// The fan-out plugin: the heartbeat timer, and the end of open streams at shutdown.
import t from 'tap'
import { openStream, SseClient, startInstance } from '../helpers/instance.js'

t.test('idle streams get heartbeats; named heartbeat events when configured', async t => {
  const { url } = await startInstance(t, { HEARTBEAT_INTERVAL_MS: 100 })
  const named = await startInstance(t, { HEARTBEAT_INTERVAL_MS: 100, HEARTBEAT_EVENT: 'ping' })
  const c = await openStream(t, `${url}/stream`)
  const n = await openStream(t, `${named.url}/stream`)
  await c.until(x => x.comments.includes('heartbeat'), 3000, 'a heartbeat comment')
  await n.until(x => x.events.some(e => e.event === 'ping'), 3000, 'a ping event')
  t.equal(n.events[0].id, undefined, 'a heartbeat has no id, so it does not move Last-Event-ID')
})

t.test('app.close() ends open streams cleanly and resolves', async t => {
  const { app, url } = await startInstance(t)
  const clients = await Promise.all([1, 2, 3].map(() => SseClient.open(`${url}/stream?topic=s`)))
  await app.close()
  for (const c of clients) await c.until(x => x.ended, 2000, 'stream end')
  t.ok(clients.every(c => c.ended), 'every stream ended')
  const after = await fetch(`${url}/health`).catch(() => null)
  t.equal(after, null, 'no longer accepting connections')
})
