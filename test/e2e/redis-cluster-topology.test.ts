// A Redis Cluster whose topology moves under live streams: a topic's slot resharded to
// another master while a publisher keeps publishing, and the sharded subscriber
// connections killed (CLIENT KILL). Every accepted event reaches every client once, in
// order; what the service could not accept, the publisher was told.
import t from 'tap'
import { notify, openStream, startInstance, type Instance, type SseClient } from '../helpers/instance.js'
import { received, startPublisher, untilReceived, type Publisher } from '../helpers/publisher.js'
import { keySlot, startCluster, type TestCluster } from '../helpers/redis-cluster.js'

type TapTest = Parameters<typeof startInstance>[0]

async function instances (t: TapTest, cluster: TestCluster, n: number): Promise<Instance[]> {
  const prefix = `rt${Math.random().toString(36).slice(2, 6)}:`
  return await Promise.all(Array.from({ length: n }, async () => await startInstance(t, { REDIS_URL: cluster.url, REDIS_PREFIX: prefix, REDIS_CONNECT_TIMEOUT_MS: 3000 })))
}

/** A topic whose log lives on master `port`, and another on a different master. */
async function topicsOn (cluster: TestCluster, prefix: string, port: number): Promise<{ mine: string, other: string }> {
  let mine: string | undefined
  let other: string | undefined
  for (let i = 0; (mine === undefined || other === undefined) && i < 1000; i++) {
    const master = await cluster.masterForSlot(keySlot(`${prefix}{t${i}}`))
    if (master === port) mine ??= `t${i}`
    else other ??= `t${i}`
  }
  return { mine: mine!, other: other! }
}

/**
 * Every event the publisher was told was accepted, once, in the order it was accepted;
 * an event whose answer said "maybe" may appear (once, in its place), one refused never.
 */
async function checkDelivery (t: TapTest, client: SseClient, pub: Publisher, label: string, what: string): Promise<void> {
  const accepted = pub.accepted()
  await untilReceived(client, accepted[accepted.length - 1], `${what}: the last accepted event`)
  const got = received(client, label)
  const maybe = new Set(pub.outcomes.filter(o => o.sent === 'unknown').map(o => o.datum))
  const refused = new Set(pub.outcomes.filter(o => o.sent === 'no').map(o => o.datum))
  t.notOk(client.ended, `${what}: the stream stayed open`)
  t.equal(new Set(got).size, got.length, `${what}: no event twice`)
  t.same(got.filter(d => !maybe.has(d)), accepted, `${what}: every accepted event, in order (${accepted.length})`)
  t.same(got.filter(d => refused.has(d)), [], `${what}: no refused event`)
  t.notOk(client.events.some(e => e.event === 'reset'), `${what}: no reset`)
}

/**
 * Moves the slot of a topic with live clients (two per instance, one also on a topic of
 * another master) to another master while a publisher keeps publishing to it, `how`:
 * step by step (publishing goes on in each half-moved state), or redis-cli --cluster
 * reshard as an operator runs it.
 */
async function reshardWhilePublishing (t: TapTest, how: 'steps' | 'redis-cli'): Promise<void> {
  const cluster = await startCluster(t, { replicas: 0 })
  const nodes = await instances(t, cluster, 2)
  const prefix = nodes[0].app.config.REDIS_PREFIX
  const masters = cluster.nodes.filter(n => n.role === 'master')
  let { mine: topic, other } = await topicsOn(cluster, prefix, masters[0].port)
  if (how === 'redis-cli') {
    // redis-cli moves a source's slots lowest first: a topic on its lowest slot moves with one.
    const lowest = masters[0].slots[0][0]
    for (let i = 0; keySlot(`${prefix}{${topic}}`) !== lowest; i++) topic = `r${i}`
  }
  const slot = keySlot(`${prefix}{${topic}}`)
  const target = masters[1].port
  const clients: SseClient[] = []
  for (const n of nodes) {
    clients.push(await openStream(t, `${n.url}/stream?topic=${topic}`))
    clients.push(await openStream(t, `${n.url}/stream?topic=${topic}&topic=${other}`))
  }
  const pub = startPublisher(t, nodes, () => topic, 'ev')
  await pub.untilAccepted(10)
  if (how === 'steps') {
    await cluster.moveSlot(slot, target, async step => {
      // MIGRATING (the key still on the old master), then keys moved (the old one answers ASK).
      t.comment(`slot ${slot} ${step}`)
      await pub.untilAccepted(10)
    })
  } else {
    await cluster.reshard(masters[0].port, target, 1)
  }
  t.equal(await cluster.masterForSlot(slot), target, `slot ${slot} moved to ${target}`)
  await pub.untilAccepted(20)
  await pub.stop()
  const counts = { yes: 0, no: 0, unknown: 0 }
  for (const o of pub.outcomes) counts[o.sent]++
  t.comment(`answers: ${JSON.stringify(counts)}${counts.no + counts.unknown > 0 ? `; e.g. ${JSON.stringify(pub.outcomes.find(o => o.sent !== 'yes'))}` : ''}`)
  for (const [i, c] of clients.entries()) await checkDelivery(t, c, pub, 'ev', `instance ${i >> 1} client ${i & 1}`)
}

t.test('a topic\'s slot moves to another master step by step while a publisher keeps publishing: every accepted event once, in order, on every client', async t => {
  await reshardWhilePublishing(t, 'steps')
})

t.test('redis-cli --cluster reshard moves a topic\'s slot while a publisher keeps publishing: every accepted event once, in order, on every client', async t => {
  await reshardWhilePublishing(t, 'redis-cli')
})

t.test('CLIENT KILL of the sharded subscriber connections on a topic\'s master: the streams stay open, catch up on the gap, nothing twice', async t => {
  const cluster = await startCluster(t, { replicas: 0 })
  const nodes = await instances(t, cluster, 2)
  const prefix = nodes[0].app.config.REDIS_PREFIX
  const masters = cluster.nodes.filter(n => n.role === 'master').map(n => n.port)
  const { mine: topic } = await topicsOn(cluster, prefix, masters[0])
  const clients = await Promise.all(nodes.map(async n => await openStream(t, `${n.url}/stream?topic=${topic}`)))
  const pub = startPublisher(t, nodes, () => topic, 'ev')
  await pub.untilAccepted(10)
  for (let round = 0; round < 3; round++) {
    const killed = await cluster.command(masters[0], 'CLIENT', 'KILL', 'TYPE', 'pubsub')
    t.ok(Number(killed) >= 2, `round ${round}: killed ${String(killed)} subscriber connections`)
    await pub.untilAccepted(10)
  }
  await pub.stop()
  for (const [i, c] of clients.entries()) await checkDelivery(t, c, pub, 'ev', `instance ${i}`)
  const replayed = nodes.map(n => n.app.bus.replayed)
  t.ok(replayed[0] + replayed[1] > 0, `events published while the subscribers were gone came from history (${replayed.join(', ')})`)
})

t.test('a master down: an event to a topic on it and one on a live master is answered 503 naming the topics that got it and those that did not', async t => {
  // Without full coverage the live masters go on serving their slots.
  const cluster = await startCluster(t, { replicas: 0, args: ['--cluster-require-full-coverage', 'no'] })
  const nodes = await instances(t, cluster, 2)
  const prefix = nodes[0].app.config.REDIS_PREFIX
  const masters = cluster.nodes.filter(n => n.role === 'master').map(n => n.port)
  const { mine: doomed } = await topicsOn(cluster, prefix, masters[0])
  // A topic on a live master that sorts before the doomed one: its copy is written first.
  let alive = ''
  for (let i = 0; alive === ''; i++) {
    const tp = `a${i}`
    if (tp < doomed && await cluster.masterForSlot(keySlot(`${prefix}{${tp}}`)) !== masters[0]) alive = tp
  }
  const reader = await openStream(t, `${nodes[1].url}/stream?topic=${alive}`)
  // Its Idempotency-Key on a live master too (the key is its own hash tag).
  let idem = ''
  for (let i = 0; idem === ''; i++) if (await cluster.masterForSlot(keySlot(`half-${i}`)) !== masters[0]) idem = `half-${i}`
  const key = { 'idempotency-key': idem }
  await cluster.kill(masters[0])
  const res = await notify(nodes[0].url, { topic: [alive, doomed], data: 'half' }, key)
  t.equal(res.status, 503, JSON.stringify(res.body))
  t.same(res.body.published, [[alive]], 'the answer names the topic that got it')
  t.same(res.body.unpublished, [[doomed]], 'and the one that did not')
  t.match(res.body.ids, [/^\d+-\d+$/], 'with its id there')
  t.match(res.body.message, `the event reached ${alive} but not ${doomed}`)
  await reader.until(c => c.events.length >= 1, 10000, 'the copy that was published')
  t.same(reader.events.map(e => e.data), ['half'])
  t.equal(reader.events[0].id, res.body.ids[0], 'under the id the answer gave')
  const retry = await notify(nodes[1].url, { topic: [alive, doomed], data: 'half' }, key)
  t.same([retry.status, retry.body], [res.status, res.body], 'a retry with its Idempotency-Key gets the same answer')
  t.equal(retry.headers.get('idempotent-replayed'), 'true', 'and publishes nothing')
  // A batch: the event to the live master's topic is published, the other not.
  const batch = await notify(nodes[1].url, [{ topic: alive, data: 'b0' }, { topic: doomed, data: 'b1' }, { topic: alive, data: 'b2' }])
  if (batch.status === 202) {
    t.fail(`the batch was taken (${JSON.stringify(batch.body)})`)
  } else {
    t.equal(batch.status, 503)
    t.same([batch.body.published, batch.body.unpublished], [[[alive], [], [alive]], [[], [doomed], []]], JSON.stringify(batch.body))
    t.match(batch.body.message, `body[1] did not reach ${doomed}`)
  }
  await reader.until(c => c.events.length >= 3, 10000, 'the batch\'s events to its topic')
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same(reader.events.map(e => e.data), ['half', 'b0', 'b2'], 'each published event once')
})
