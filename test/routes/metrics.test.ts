// GET /metrics.
import t from 'tap'
import { startInstance } from '../helpers/instance.js'

t.test('metrics in the Prometheus text format, never behind auth', async t => {
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', PUBLISH_AUTH: 'on', JWT_SECRET: 'x'.repeat(32) })
  const res = await fetch(`${url}/metrics`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  t.match(await res.text(), /^# HELP sse_clients Open SSE streams on this instance$/m)
})
