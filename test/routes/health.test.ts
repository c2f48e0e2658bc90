// GET /health.
import t from 'tap'
import { openStream, startInstance } from '../helpers/instance.js'

t.test('health: ok in single-instance mode, with the instance id and its open streams', async t => {
  const { url } = await startInstance(t)
  await openStream(t, `${url}/stream?topic=m`)
  const health = await (await fetch(`${url}/health`)).json()
  t.match(health, { status: 'ok', mode: 'single', redis: { configured: false, connected: false }, clients: 1 })
  t.type(health.instanceId, 'string')
})
