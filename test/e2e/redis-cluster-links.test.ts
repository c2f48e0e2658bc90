// The links between instances and the masters of a Redis Cluster, each master reached
// through a link the test controls: every link cut (the outbox, then a master refusing
// writes as it is published, so an event of two masters' topics goes on from the copy that
// failed), a link that loses a publish's reply (the publish is never run twice), and a
// distant master whose connection is still being made when publishes for it arrive.
import t from 'tap'
import { linkMasters } from '../helpers/link.js'
import { notify, openStream, startInstance, type Instance, type SseClient } from '../helpers/instance.js'
import { masterAtStart, startCluster } from '../helpers/redis-cluster.js'
import { until } from '../helpers/wait.js'

async function health (i: Instance): Promise<any> {
  return await (await fetch(`${i.url}/health`)).json()
}

/** Per topic of `topics`, the data of the events `c` got through it, in order (an event of both counted once, under the first). */
function perTopic (c: SseClient, topics: Record<string, string[]>): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const [topic, of] of Object.entries(topics)) out[topic] = c.events.map(e => e.data).filter(d => of.includes(d))
  return out
}

t.test('every instance cut off from every master, then back with one master refusing writes: the outbox publishes each event once, an event of two masters\' topics from the copy that failed', async t => {
  const cluster = await startCluster(t, { replicas: 0 })
  const masters = cluster.nodes.filter(n => n.role === 'master').map(n => n.port)
  const links = await linkMasters(t, cluster)
  const prefix = `ro${Math.random().toString(36).slice(2, 6)}:`
  const masterOf = (log: string): number => masterAtStart(cluster, `${prefix}{${log}}`)
  // Topic `a…` on one master, `b…` on another (a sorts first: its copy is written first).
  let first = ''
  let second = ''
  for (let i = 0; first === '' || second === ''; i++) {
    if (first === '' && masterOf(`a${i}`) === masters[0]) first = `a${i}`
    if (second === '' && masterOf(`b${i}`) === masters[1]) second = `b${i}`
  }
  // A's own proof goes through the first master: with only that one back, A can drain.
  let idA = ''
  for (let i = 0; idA === ''; i++) if (masterOf(`*probe:outbox-a-${i}`) === masters[0]) idA = `outbox-a-${i}`
  const config = { REDIS_URL: `redis://127.0.0.1:${links.get(masters[0])!.port}`, REDIS_PREFIX: prefix, REDIS_CONNECT_TIMEOUT_MS: 3000 }
  const a = await startInstance(t, config, false, idA)
  const b = await startInstance(t, config)
  const both = `topic=${first}&topic=${second}`
  const onA = await openStream(t, `${a.url}/stream?${both}`)
  const onB = await openStream(t, `${b.url}/stream?${both}`)
  const onBFirst = await openStream(t, `${b.url}/stream?topic=${first}`)
  const onBSecond = await openStream(t, `${b.url}/stream?topic=${second}`)
  await until(async () => (await health(a)).status === 'ok' && (await health(b)).status === 'ok', 10000, 'both ok')
  const zero = await notify(a.url, { topic: [first, second], data: 'e0' })
  t.same([zero.status, zero.body.fanout], [202, 'cluster'], JSON.stringify(zero.body))
  for (const c of [onA, onB, onBFirst, onBSecond]) await c.untilEvents(1, 10000)

  for (const link of links.values()) await link.cut()
  await until(async () => (await health(a)).status === 'degraded', 10000, 'A degraded')
  const kept = [
    await notify(a.url, { topic: [first, second], data: 'o1' }),
    await notify(a.url, { topic: second, data: 'o2' }),
    await notify(a.url, { topic: first, data: 'o3' })
  ]
  t.same(kept.map(r => [r.status, r.body.fanout]), [[202, 'local'], [202, 'local'], [202, 'local']], 'accepted, delivered on A, kept for the others')
  await onA.untilEvents(4)
  t.same(onA.events.map(e => e.data), ['e0', 'o1', 'o2', 'o3'], 'A\'s client has them at once')

  // The links back, but the second topic's master out of memory: o1's copy in `first` is
  // published, the one in `second` refused, and the outbox waits on it.
  await cluster.command(masters[1], 'CONFIG', 'SET', 'maxmemory', '1')
  for (const link of links.values()) await link.restore()
  await onBFirst.until(c => c.events.some(e => e.data === 'o1'), 20000, 'o1 through the first master')
  await until(async () => /OOM/.test((await health(a)).reason ?? ''), 5000, 'A degraded, naming OOM')
  await new Promise(resolve => setTimeout(resolve, 1000))
  t.same(onBSecond.events.map(e => e.data), ['e0'], 'nothing through the master refusing writes')
  t.same(onB.events.map(e => e.data), ['e0', 'o1'], 'B\'s client of both got o1 once, through its first topic')

  await cluster.command(masters[1], 'CONFIG', 'SET', 'maxmemory', '0')
  await until(async () => (await health(a)).status === 'ok', 10000, 'A ok')
  await onBSecond.until(c => c.events.some(e => e.data === 'o2'), 10000, 'o2 through the second master')
  await onB.until(c => c.events.some(e => e.data === 'o3'), 10000, 'o3')
  await new Promise(resolve => setTimeout(resolve, 500))
  const order = { [first]: ['e0', 'o1', 'o3'], [second]: ['e0', 'o1', 'o2'] }
  t.same(onBFirst.events.map(e => e.data), ['e0', 'o1', 'o3'], `B, ${first} only: each once, in order`)
  t.same(onBSecond.events.map(e => e.data), ['e0', 'o1', 'o2'], `B, ${second} only: o1's second copy, then o2`)
  t.equal(onB.events.length, 4, 'B, both topics: four events, none twice')
  t.same(perTopic(onB, order), order, 'in each topic\'s order')
  t.same(onA.events.map(e => e.data), ['e0', 'o1', 'o2', 'o3'], 'A\'s client got nothing again when its outbox was published')

  // A resume on A from e0 replays the outage's events once each, with ids now.
  const resumed = await openStream(t, `${a.url}/stream?${both}`, { 'last-event-id': onB.events[0].id! })
  await resumed.untilEvents(3, 10000)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.equal(resumed.events.length, 3, 'a resume from e0: three events, none twice')
  t.same(perTopic(resumed, { [first]: ['o1', 'o3'], [second]: ['o1', 'o2'] }), { [first]: ['o1', 'o3'], [second]: ['o1', 'o2'] })
  t.notOk([onB, onBFirst, onBSecond, resumed].some(c => c.events.some(e => e.event === 'reset')), 'no reset anywhere')
})

t.test('a publish whose reply is lost (the connection closes after the script ran): settled from the log, answered 202 with its id; in the log once, never run again', async t => {
  const cluster = await startCluster(t, { replicas: 0 })
  const masters = cluster.nodes.filter(n => n.role === 'master').map(n => n.port)
  const links = await linkMasters(t, cluster)
  const prefix = `rl${Math.random().toString(36).slice(2, 6)}:`
  let topic = ''
  for (let i = 0; topic === ''; i++) if (masterAtStart(cluster, `${prefix}{l${i}}`) === masters[1]) topic = `l${i}`
  const a = await startInstance(t, { REDIS_URL: `redis://127.0.0.1:${links.get(masters[0])!.port}`, REDIS_PREFIX: prefix, REDIS_CONNECT_TIMEOUT_MS: 3000 })
  await until(async () => (await health(a)).status === 'ok', 10000, 'A ok')
  const before = await notify(a.url, { topic, data: 'before' })
  t.equal(before.body.fanout, 'cluster', JSON.stringify(before.body))

  links.get(masters[1])!.loseNextReply = true
  const lost = await notify(a.url, { topic, data: 'lost' })
  t.equal(lost.status, 202, JSON.stringify(lost.body))
  t.equal(lost.body.fanout, 'cluster', 'published, and the answer says so')
  const entries = await cluster.command(masters[1], 'XRANGE', `${prefix}{${topic}}`, '-', '+') as Array<[string, string[]]>
  t.equal(entries.length, 2, 'the script ran once: not sent again on a new connection')
  t.equal(lost.body.id, entries[1][0], 'the id is its position in the log')

  // What a client resuming after `before` is replayed: the event once, with that id.
  const after = await notify(a.url, { topic, data: 'after' })
  t.equal(after.body.fanout, 'cluster', `and the next publish at once: ${JSON.stringify(after.body)}`)
  const resumed = await openStream(t, `${a.url}/stream?topic=${topic}`, { 'last-event-id': before.body.id })
  await resumed.until(c => c.events.some(e => e.data === 'after'), 10000, 'the replay')
  t.same(resumed.events.filter(e => e.data !== 'after').map(e => [e.data, e.id]), [['lost', lost.body.id]], 'a resume replays the event once')
})

t.test('the first publish to a master not heard from yet, its reply lost: settled from the log too (its deadline from another master\'s clock), answered 202', async t => {
  const cluster = await startCluster(t, { replicas: 0 })
  const masters = cluster.nodes.filter(n => n.role === 'master').map(n => n.port)
  const links = await linkMasters(t, cluster)
  const prefix = `rf${Math.random().toString(36).slice(2, 6)}:`
  const instanceId = `first-${Math.random().toString(36).slice(2, 6)}`
  // Only the health probe has been published before, on its own log's master: pick another.
  const probed = masterAtStart(cluster, `${prefix}{*probe:${instanceId}}`)
  let topic = ''
  for (let i = 0; topic === ''; i++) if (masterAtStart(cluster, `${prefix}{f${i}}`) !== probed) topic = `f${i}`
  const master = masterAtStart(cluster, `${prefix}{${topic}}`)
  // The probe's master a little distant: its connection is still being made when the
  // health probe publishes there (the probe must wait for it, and so learn its clock).
  links.get(probed)!.delayMs = 300
  const a = await startInstance(t, { REDIS_URL: `redis://127.0.0.1:${links.get(masters[0])!.port}`, REDIS_PREFIX: prefix, REDIS_CONNECT_TIMEOUT_MS: 3000 }, false, instanceId)
  await until(async () => (await health(a)).status === 'ok', 15000, 'A ok')
  links.get(probed)!.delayMs = 0

  links.get(master)!.loseReplyTo = 'data: first\n'
  const first = await notify(a.url, { topic, data: 'first' })
  t.equal(links.get(master)!.loseReplyTo, null, 'its reply was lost')
  t.equal(first.status, 202, JSON.stringify(first.body))
  t.equal(first.body.fanout, 'cluster', 'published, and the answer says so')
  const entries = await cluster.command(master, 'XRANGE', `${prefix}{${topic}}`, '-', '+') as Array<[string, string[]]>
  t.equal(entries.length, 1, 'the script ran once')
  t.equal(first.body.id, entries[0][0], 'the id is its position in the log')
})

t.test('a publish lost on its way (the connection closes before Redis reads it): answered 503 "not published", nothing in the log; its retry is published once', async t => {
  const cluster = await startCluster(t, { replicas: 0 })
  const masters = cluster.nodes.filter(n => n.role === 'master').map(n => n.port)
  const links = await linkMasters(t, cluster)
  const prefix = `rc${Math.random().toString(36).slice(2, 6)}:`
  let topic = ''
  for (let i = 0; topic === ''; i++) if (masterAtStart(cluster, `${prefix}{c${i}}`) === masters[2]) topic = `c${i}`
  const a = await startInstance(t, { REDIS_URL: `redis://127.0.0.1:${links.get(masters[0])!.port}`, REDIS_PREFIX: prefix, REDIS_CONNECT_TIMEOUT_MS: 3000 })
  await until(async () => (await health(a)).status === 'ok', 10000, 'A ok')
  const onA = await openStream(t, `${a.url}/stream?topic=${topic}`)
  const before = await notify(a.url, { topic, data: 'before' })
  t.equal(before.body.fanout, 'cluster', JSON.stringify(before.body))
  await onA.untilEvents(1)

  links.get(masters[2])!.loseNextCommand = true
  const lost = await notify(a.url, { topic, data: 'lost' })
  t.equal(lost.status, 503, JSON.stringify(lost.body))
  t.match(lost.body.message, /was not published: a retry cannot deliver it twice/)
  t.ok(Number(lost.headers.get('retry-after')) >= 1, 'with Retry-After')
  const key = `${prefix}{${topic}}`
  t.equal((await cluster.command(masters[2], 'XRANGE', key, '-', '+') as unknown[]).length, 1, 'nothing of it in the log')

  const retry = await notify(a.url, { topic, data: 'lost' })
  t.equal(retry.status, 202, JSON.stringify(retry.body))
  await onA.untilEvents(2)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same(onA.events.map(e => e.data), ['before', 'lost'], 'the client got the retry, once')
  t.equal((await cluster.command(masters[2], 'XRANGE', key, '-', '+') as unknown[]).length, 2, 'in the log once')
})

t.test('publishes to a distant master while the connection to it is still being made: they wait for it and are published, not failed as lost', async t => {
  const cluster = await startCluster(t, { replicas: 0 })
  const masters = cluster.nodes.filter(n => n.role === 'master').map(n => n.port)
  const links = await linkMasters(t, cluster)
  const prefix = `rd${Math.random().toString(36).slice(2, 6)}:`
  const topics: string[] = []
  for (let i = 0; topics.length < 2; i++) if (masterAtStart(cluster, `${prefix}{d${i}}`) === masters[1]) topics.push(`d${i}`)
  // Each of the connection's first exchanges (HELLO, CLIENT SETNAME, INFO) takes 300 ms.
  links.get(masters[1])!.delayMs = 300
  const a = await startInstance(t, { REDIS_URL: `redis://127.0.0.1:${links.get(masters[0])!.port}`, REDIS_PREFIX: prefix, REDIS_CONNECT_TIMEOUT_MS: 5000 })
  await until(async () => (await health(a)).status === 'ok', 10000, 'A ok')
  // One batch, one call per topic: the first call starts the connection, the second finds it being made.
  const batch = await notify(a.url, topics.map(topic => ({ topic, data: topic })))
  t.equal(batch.status, 202, JSON.stringify(batch.body))
  t.equal(batch.body.fanout, 'cluster')
  for (const topic of topics) {
    const entries = await cluster.command(masters[1], 'XRANGE', `${prefix}{${topic}}`, '-', '+') as unknown[]
    t.equal(entries.length, 1, `${topic}: in its log once`)
  }

  // The publisher's connection to that master killed: ioredis drops it from its pool, and
  // the next publishes would reach the master through a MOVED while a new connection is made.
  await cluster.command(masters[1], 'CLIENT', 'KILL', 'SKIPME', 'yes', 'TYPE', 'normal')
  await new Promise(resolve => setTimeout(resolve, 200))
  const again = await notify(a.url, topics.map(topic => ({ topic, data: `${topic} again` })))
  t.equal(again.status, 202, JSON.stringify(again.body))
  for (const topic of topics) {
    const entries = await cluster.command(masters[1], 'XRANGE', `${prefix}{${topic}}`, '-', '+') as unknown[]
    t.equal(entries.length, 2, `${topic}: both events in its log, once each`)
  }
})
