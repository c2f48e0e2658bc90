// Streams on a Redis Cluster while a publisher keeps publishing: a 32-topic stream (its
// topics on every master) that resumes on another instance, and clients of a topic that
// open and close over and over, across the 2 s linger of its subscription.
import t from 'tap'
import { openStream, startInstance, type Instance, type SseClient } from '../helpers/instance.js'
import { received, startPublisher, untilReceived } from '../helpers/publisher.js'
import { keySlot, startCluster, type TestCluster } from '../helpers/redis-cluster.js'

type TapTest = Parameters<typeof startInstance>[0]

async function instances (t: TapTest, cluster: TestCluster, n: number): Promise<Instance[]> {
  const prefix = `rs${Math.random().toString(36).slice(2, 6)}:`
  return await Promise.all(Array.from({ length: n }, async () => await startInstance(t, { REDIS_URL: cluster.url, REDIS_PREFIX: prefix, REDIS_CONNECT_TIMEOUT_MS: 3000 })))
}

/** Deterministic pseudo-random numbers in [0, 1), so a failure can be replayed. */
function random (seed: number): () => number {
  let x = seed
  return () => {
    x = (x * 1103515245 + 12345) % 2147483648
    return x / 2147483648
  }
}

t.test('a 32-topic stream over every master resumes on another instance with its Last-Event-ID: exactly what it missed, while publishing goes on', async t => {
  const cluster = await startCluster(t, { replicas: 0 })
  const nodes = await instances(t, cluster, 2)
  const prefix = nodes[0].app.config.REDIS_PREFIX
  const topics = Array.from({ length: 32 }, (_, i) => `s${i}`)
  const perMaster = new Map<number, number>()
  for (const topic of topics) {
    const master = await cluster.masterForSlot(keySlot(`${prefix}{${topic}}`))
    perMaster.set(master, (perMaster.get(master) ?? 0) + 1)
  }
  t.equal(perMaster.size, 3, `the topics live on every master (${[...perMaster.values()].join(', ')})`)
  const query = topics.map(tp => `topic=${tp}`).join('&')
  const rnd = random(32)
  // Mostly one topic; every 4th event to three topics (usually on several masters); every
  // 10th a broadcast, which every stream gets too.
  const first = await openStream(t, `${nodes[0].url}/stream?${query}`)
  const pub = startPublisher(t, nodes, i => {
    if (i % 10 === 9) return undefined
    const pick = (): string => topics[Math.floor(rnd() * topics.length)]
    return i % 4 === 3 ? [...new Set([pick(), pick(), pick()])] : pick()
  }, 'ev')
  await pub.untilAccepted(30)
  await untilReceived(first, pub.accepted()[29], 'the first session')
  first.close()
  const last = first.lastEventId!
  t.ok(last.length < 1024, `a 32-topic cursor stays well under 1 KB (${last.length} bytes)`)
  // What it misses while away, then its resume on the other instance as publishing goes on.
  await pub.untilAccepted(30)
  const second = await openStream(t, `${nodes[1].url}/stream?${query}`, { 'last-event-id': last })
  await pub.untilAccepted(30)
  await pub.stop()
  const accepted = pub.accepted()
  await untilReceived(second, accepted[accepted.length - 1], 'the resumed session')
  t.same(pub.outcomes.filter(o => o.sent !== 'yes'), [], 'every publish accepted')
  const got = [...received(first, 'ev'), ...received(second, 'ev')]
  t.ok(received(second, 'ev').length >= 30, `the resumed stream got what it missed and what came after (${received(second, 'ev').length})`)
  t.equal(new Set(got).size, got.length, 'nothing twice across the two sessions')
  t.same(new Set(got), new Set(accepted), `together, every event (${accepted.length})`)
  // The publisher waited for each answer: the events of each log (a topic's own, the
  // broadcasts) were accepted in that order. Across logs no order is promised.
  const logOf = new Map(pub.outcomes.map(o => [o.datum, o.topic === undefined ? '*' : Array.isArray(o.topic) ? null : o.topic]))
  for (const log of [...topics, '*']) {
    const mine = (d: string): boolean => logOf.get(d) === log
    t.same(got.filter(mine), accepted.filter(mine), `${log === '*' ? 'the broadcasts' : `topic ${log}`}: its events in order`)
  }
  t.notOk(second.events.some(e => e.event === 'reset'), 'no reset: history covered the gap')
  t.notOk(second.ended, 'the resumed stream stays open')
})

t.test('clients of a topic open and close over and over while publishing goes on: a client that saw its stream open gets every event published after, none twice', async t => {
  const cluster = await startCluster(t, { replicas: 0 })
  const nodes = await instances(t, cluster, 2)
  const [churned, publishing] = nodes
  // The publisher alternates topics a (read by the churning clients), b, and both.
  const pub = startPublisher(t, [publishing, churned], i => i % 5 === 4 ? ['a', 'b'] : i % 5 === 2 ? 'b' : 'a', 'ev')
  const aOf = new Map<string, boolean>()
  const readsA = (d: string): boolean => {
    let v = aOf.get(d)
    if (v === undefined) {
      const o = pub.outcomes.find(x => x.datum === d)!
      v = o.topic === 'a' || (Array.isArray(o.topic) && o.topic.includes('a'))
      aOf.set(d, v)
    }
    return v
  }
  await pub.untilAccepted(5)
  const sessions: Array<{ client: SseClient, both: boolean, openedAt: number, through: string, what: string }> = []
  // Two churners with their own rhythm: pauses under and over the 2 s linger, so a client
  // finds the subscription lingering, gone, or being made, and one opens as the other closes.
  const churner = async (id: number, url: string): Promise<void> => {
    const rnd = random(id + 1)
    for (let round = 0; round < 7; round++) {
      const both = rnd() < 0.3
      const client = await openStream(t, `${url}/stream?topic=a${both ? '&topic=b' : ''}`)
      const openedAt = Date.now()
      // Live for a few events (and a moment), then closed.
      await pub.untilAccepted(2 + Math.floor(rnd() * 4))
      const after = pub.outcomes.filter(o => o.startedAt > openedAt && o.sent === 'yes' && readsA(o.datum))
      const through = after.length > 0 ? after[after.length - 1].datum : ''
      if (through !== '') await untilReceived(client, through, `churner ${id} round ${round}`, 10000)
      client.close()
      sessions.push({ client, both, openedAt, through, what: `churner ${id} round ${round}${both ? ' (a+b)' : ''}` })
      const pauses = [0, 200, 1000, 1900, 2300, 3000]
      await new Promise(resolve => setTimeout(resolve, pauses[Math.floor(rnd() * pauses.length)]))
    }
  }
  await Promise.all([churner(1, churned.url), churner(2, churned.url)])
  await pub.stop()
  const accepted = pub.accepted()
  let checked = 0
  for (const s of sessions) {
    const got = received(s.client, 'ev')
    t.equal(new Set(got).size, got.length, `${s.what}: nothing twice`)
    if (s.through === '') continue
    const expected = pub.outcomes.filter(o => o.startedAt > s.openedAt && o.sent === 'yes').map(o => o.datum)
      .filter(d => s.both || readsA(d))
    const upTo = expected.slice(0, expected.indexOf(s.through) + 1)
    const mine = new Set(upTo)
    t.same(got.filter(d => mine.has(d)), upTo, `${s.what}: every event published after it opened, in order (${upTo.length})`)
    checked++
  }
  t.ok(checked >= 10, `${checked} sessions checked`)
  t.ok(accepted.length > 0)
  t.same(pub.outcomes.filter(o => o.sent !== 'yes'), [], 'every publish accepted')
})
