// The cluster helper really starts a 3+3 Redis Cluster that fails over, restarts and reshards.
import { Cluster } from 'ioredis'
import t from 'tap'
import { keySlot, startCluster } from './redis-cluster.js'

function client (nodes: Array<{ host: string, port: number }>, options: ConstructorParameters<typeof Cluster>[1] = {}): Cluster {
  const c = new Cluster(nodes, { clusterRetryStrategy: () => 100, ...options })
  c.on('error', () => {})
  return c
}

t.test('keySlot matches CLUSTER KEYSLOT, hash tags included', async t => {
  const cluster = await startCluster(t)
  for (const key of ['a', 'orders', '{orders}:stream', 'x{}y', 'foo{bar}{baz}', 'é']) {
    t.equal(keySlot(key), await cluster.command(cluster.ports[0], 'CLUSTER', 'KEYSLOT', key), key)
  }
})

t.test('3 masters + 3 replicas: keys in different slots, failover of a SIGKILLed master, restart', async t => {
  const started = Date.now()
  const cluster = await startCluster(t)
  t.comment(`cluster up in ${Date.now() - started} ms`)
  t.equal(cluster.nodes.filter(n => n.role === 'master').length, 3)
  t.equal(cluster.nodes.filter(n => n.role === 'replica').length, 3)
  t.match(cluster.url, /^redis:\/\/127\.0\.0\.1:\d+$/)

  const redis = client(cluster.startupNodes)
  t.teardown(() => redis.disconnect())
  // Keys on all three masters.
  const keys = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']
  const owners = new Set<number>()
  for (const key of keys) {
    await redis.set(key, `v-${key}`)
    owners.add(await cluster.masterForKey(key))
  }
  t.equal(owners.size, 3, 'the keys live on three masters')
  for (const key of keys) t.equal(await redis.get(key), `v-${key}`)

  await cluster.waitForReplication()
  const victim = await cluster.masterForKey('a')
  const [replica] = await cluster.replicasOf(victim)
  const killedAt = Date.now()
  await cluster.kill(victim)
  const promoted = await cluster.waitForPromotion(victim)
  t.comment(`replica ${promoted} promoted ${Date.now() - killedAt} ms after SIGKILL of ${victim}`)
  t.equal(promoted, replica, 'the dead master\'s replica took over')
  t.equal(await cluster.masterForKey('a'), promoted)

  // The same client: it follows the MOVED/refresh to the new master.
  t.equal(await redis.get('a'), 'v-a', 'the key survived the failover')
  await redis.set('a', 'after')
  t.equal(await redis.get('a'), 'after')
  for (const key of keys.slice(1)) t.equal(await redis.get(key), `v-${key}`)

  // The old master comes back as a replica of the promoted one.
  await cluster.restart(victim)
  await cluster.waitForState(true)
  const back = await cluster.topology()
  t.match(back.find(n => n.port === victim), { role: 'replica', masterPort: promoted })
})

t.test('reshard moves slots, a master and its replica down is cluster_state:fail', async t => {
  const cluster = await startCluster(t)
  const [m1, m2] = cluster.nodes.filter(n => n.role === 'master')
  const redis = client(cluster.startupNodes)
  t.teardown(() => redis.disconnect())
  const slot = m1.slots[0][0]
  await cluster.reshard(m1.port, m2.port, 10)
  t.equal(await cluster.masterForSlot(slot), m2.port, 'the first slot of m1 moved to m2')
  const moved = cluster.nodes.find(n => n.port === m2.port)!
  t.ok(moved.slots.some(([a, b]) => slot >= a && slot <= b))
  await redis.set('z', '1') // still serves
  t.equal(await redis.get('z'), '1')

  const replicas = await cluster.replicasOf(m1.port)
  await Promise.all([m1.port, ...replicas].map(p => cluster.kill(p)))
  await cluster.waitForState(false)
  t.pass('cluster_state:fail with one shard gone')
})

t.test('password (requirepass + masterauth) and an ACL user', async t => {
  const withPass = await startCluster(t, { password: 's3cret' })
  t.match(withPass.url, /^redis:\/\/:s3cret@127\.0\.0\.1:\d+$/)
  const a = client(withPass.startupNodes, { redisOptions: { password: 's3cret' } })
  t.teardown(() => a.disconnect())
  await a.set('k', 'v')
  t.equal(await a.get('k'), 'v')
  await withPass.waitForReplication()

  const withUser = await startCluster(t, { username: 'fanout', password: 'pw', replicas: 0 })
  t.equal(withUser.nodes.length, 3)
  const b = client(withUser.startupNodes, { redisOptions: { username: 'fanout', password: 'pw' } })
  t.teardown(() => b.disconnect())
  await b.set('k', 'v')
  t.equal(await b.get('k'), 'v')
  t.equal(await withUser.command(withUser.ports[0], 'ACL', 'WHOAMI'), 'fanout')
})
