// The sentinel helper really starts master + replica + 3 sentinels that fail over.
import { Redis } from 'ioredis'
import t from 'tap'
import { startSentinel } from './redis-sentinel.js'

t.test('a sentinel client writes, the master is SIGKILLed, writes succeed on the promoted replica', async t => {
  const started = Date.now()
  const setup = await startSentinel(t)
  t.comment(`sentinels ready in ${Date.now() - started} ms`)
  t.equal(setup.sentinels.length, 3)
  t.equal(await setup.currentMaster(), setup.masterPort)

  const redis = new Redis({ sentinels: setup.sentinels, name: setup.masterName, retryStrategy: () => 100 })
  t.teardown(() => redis.disconnect())
  redis.on('error', () => {})
  await redis.set('before', '1')
  t.equal(await redis.get('before'), '1')
  t.match(await redis.info('server'), `tcp_port:${setup.masterPort}\r\n`, 'connected to the master the sentinels named')
  t.equal(await redis.wait(1, 2000), 1, 'the replica has the write')

  const killedAt = Date.now()
  await setup.kill(setup.masterPort)
  const promoted = await setup.waitForFailover()
  t.comment(`failover to ${promoted} ${Date.now() - killedAt} ms after SIGKILL`)
  t.equal(promoted, setup.replicaPort, 'the replica is the new master')

  // The same client finds the new master through the sentinels.
  await redis.set('after', '2')
  t.equal(await redis.get('after'), '2')
  t.equal(await redis.get('before'), '1', 'the replicated write survived')
  t.same(await setup.command(setup.replicaPort, 'GET', 'after'), '2', 'written on the promoted replica')
})

t.test('with a password', async t => {
  const setup = await startSentinel(t, { password: 'pw', masterName: 'secure' })
  const redis = new Redis({ sentinels: setup.sentinels, name: 'secure', password: 'pw' })
  t.teardown(() => redis.disconnect())
  redis.on('error', () => {})
  await redis.set('k', 'v')
  t.equal(await redis.get('k'), 'v')
})
