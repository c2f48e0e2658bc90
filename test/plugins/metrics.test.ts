// The metrics: streams, publishes, deliveries and requests, as /metrics shows them.
import t from 'tap'
import { notify, openStream, startInstance } from '../helpers/instance.js'

t.test('metrics count streams, publishes, deliveries and requests', async t => {
  const { url } = await startInstance(t)
  const c = await openStream(t, `${url}/stream?topic=m`)
  await notify(url, { topic: 'm', data: 1 })
  await c.untilEvents(1)
  const text = await (await fetch(`${url}/metrics`)).text()
  t.match(text, /^sse_clients 1$/m)
  t.match(text, /^sse_events_published_total\{fanout="local"\} 1$/m)
  t.match(text, /^sse_events_delivered_total 1$/m)
  t.match(text, /^sse_redis_connected 0$/m)
  t.match(text, /^sse_slow_clients_disconnected_total 0$/m)
  t.match(text, /^sse_events_replayed_total 0$/m)
  t.match(text, /http_requests_total\{method="POST",route="\/notify",status="202"\} 1/)
})
