// The slot-map check against a real Redis Cluster: the same map while nothing moves, a
// difference as soon as one slot has moved, and the same again once ioredis has refreshed.
import { Cluster } from 'ioredis'
import t from 'tap'
import { replyMasters, tableMasters } from '../../src/cluster-slots.js'

const sameMasters = (reply: unknown, slots: ArrayLike<string[] | undefined>): boolean => {
  const map = replyMasters(reply)
  return map !== null && map === tableMasters(slots)
}
import { startCluster } from '../helpers/redis-cluster.js'
import { until } from '../helpers/wait.js'

t.test('a CLUSTER SLOTS reply against ioredis\'s slot table', async t => {
  const cluster = await startCluster(t, { replicas: 0 })
  const client = new Cluster(cluster.startupNodes)
  t.teardown(() => client.disconnect())
  await until(async () => client.status === 'ready', 10000, 'connected')
  t.ok(sameMasters(await client.cluster('SLOTS'), client.slots), 'nothing moved: the same masters')
  t.match(replyMasters(await client.cluster('SLOTS')), /^0-\d+ 127\.0\.0\.1:\d+,\d+-\d+ 127\.0\.0\.1:\d+,\d+-16383 127\.0\.0\.1:\d+$/, 'three ranges')

  const copy = client.slots.map(keys => keys === undefined ? keys : [...keys])
  const other = copy.find(keys => keys !== undefined && keys[0] !== copy[100][0])!
  copy[100] = other
  t.notOk(sameMasters(await client.cluster('SLOTS'), copy), 'one slot on another master: different')
  copy[100] = undefined as unknown as string[]
  t.notOk(sameMasters(await client.cluster('SLOTS'), copy), 'one slot unknown: different')
  t.notOk(sameMasters(null, client.slots), 'no reply: different (the full refresh runs)')

  // Move one slot for real: the cluster's map changes, ioredis's has not yet.
  const masters = (await cluster.topology()).filter(n => n.role === 'master')
  const from = masters.find(m => m.slots.some(([a, b]) => a <= 0 && b >= 0))!
  const to = masters.find(m => m !== from)!
  await cluster.reshard(from.port, to.port, 1)
  await until(async () => !sameMasters(await client.cluster('SLOTS'), client.slots), 10000, 'the move seen')
  await new Promise<void>((resolve, reject) => client.refreshSlotsCache(err => err === undefined || err === null ? resolve() : reject(err)))
  await until(async () => sameMasters(await client.cluster('SLOTS'), client.slots), 10000, 'the same after ioredis refreshed')
})
