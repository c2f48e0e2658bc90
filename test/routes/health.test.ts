// GET /health.
import t from 'tap'
import { SseClient, startInstance } from '../helpers/instance.js'

t.test('health: ok in single-instance mode, with the instance id and its open streams', async t => {
  const { app, url } = await startInstance()
  t.teardown(() => app.close())
  const c = await SseClient.open(`${url}/stream?topic=m`)
  t.teardown(() => c.close())
  const health = await (await fetch(`${url}/health`)).json()
  t.match(health, { status: 'ok', mode: 'single', redis: { configured: false, connected: false }, clients: 1 })
  t.type(health.instanceId, 'string')
})
