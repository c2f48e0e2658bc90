// Redis Sentinel for self-hosted high availability: a master, a replica and three
// sentinels; the master SIGKILLed while events flow; the instances follow the promoted
// replica, the outbox drains, and every client ends with every event once, or a reset.
import t from 'tap'
import { notify, openStream, startInstance, type Instance } from '../helpers/instance.js'
import { startSentinel } from '../helpers/redis-sentinel.js'
import { until } from '../helpers/wait.js'

async function health (n: Instance): Promise<any> {
  return await (await fetch(`${n.url}/health`)).json()
}

t.test('the master SIGKILLed: instances follow the promoted replica, the outbox drains, every event once or a reset', async t => {
  const s = await startSentinel(t, { password: 'sentinel-pass' })
  const config = {
    REDIS_SENTINELS: s.sentinels.map(x => `${x.host}:${x.port}`).join(','),
    REDIS_SENTINEL_NAME: s.masterName,
    REDIS_URL: 'redis://:sentinel-pass@unused:6379',
    REDIS_PREFIX: 'st:',
    REDIS_CONNECT_TIMEOUT_MS: 3000
  }
  const nodes = [await startInstance(t, config), await startInstance(t, config)]
  for (const n of nodes) t.match(await health(n), { status: 'ok', redis: { connected: true, mode: 'sentinel' } })
  const readers = await Promise.all(nodes.map(async n => await openStream(t, `${n.url}/stream?topic=s`)))
  const accepted: string[] = []
  for (let i = 0; i < 5; i++) {
    const res = await notify(nodes[i % 2].url, { topic: 's', data: `before-${i}` })
    t.equal(res.body.fanout, 'cluster')
    accepted.push(`before-${i}`)
  }
  for (const r of readers) await r.untilEvents(5)
  await s.command(s.masterPort, 'WAIT', 1, 2000)
  await s.kill(s.masterPort)
  // While the master is gone, publishes are accepted locally and kept in the outbox.
  for (let i = 0; i < 3; i++) {
    const res = await notify(nodes[i % 2].url, { topic: 's', data: `during-${i}` })
    t.equal(res.status, 202)
    accepted.push(`during-${i}`)
  }
  const promoted = await s.waitForFailover()
  t.equal(promoted, s.replicaPort, 'the replica was promoted')
  await until(async () => (await health(nodes[0])).status === 'ok' && (await health(nodes[1])).status === 'ok', 20000, 'both instances on the new master', 100)
  const after = await notify(nodes[0].url, { topic: 's', data: 'after' })
  t.equal(after.body.fanout, 'cluster')
  accepted.push('after')
  for (const n of nodes) {
    const m = await (await fetch(`${n.url}/metrics`)).text()
    await until(async () => /^sse_outbox_events 0$/m.test(await (await fetch(`${n.url}/metrics`)).text()), 10000, 'the outbox to drain')
    t.ok(m.length > 0)
  }
  for (const r of readers) {
    await r.until(c => c.ended || c.events.some(e => e.data === 'after'), 15000, 'the event after the failover')
    if (r.ended) {
      t.pass('history lost in the failover: the stream ended so that its resume says so')
      continue
    }
    await new Promise(resolve => setTimeout(resolve, 300))
    const got = r.events.map(e => e.data)
    t.same([...got].sort(), [...accepted].sort(), 'every accepted event once')
    t.equal(new Set(got).size, got.length, 'no duplicate')
    t.same(got.filter(d => d.startsWith('before-')), accepted.filter(d => d.startsWith('before-')), 'in order')
  }
})

t.test('REDIS_SENTINELS without REDIS_SENTINEL_NAME stops the start naming it', async t => {
  await t.rejects(startInstance(t, { REDIS_SENTINELS: '127.0.0.1:26379' }), /REDIS_SENTINEL_NAME/)
})
