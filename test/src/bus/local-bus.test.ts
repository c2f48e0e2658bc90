// The single-instance bus: positions from the local clock, one entry per log, delivery at once.
import t from 'tap'
import type { Bus, BusListener } from '../../../src/bus/bus.js'
import { LocalBus } from '../../../src/bus/local-bus.js'
import { compareIds, isEventId } from '../../../src/event-id.js'
import type { Delivery } from '../../../src/hub.js'

function setup (historySize = 100, paced?: BusListener['paced']): { bus: LocalBus, got: Delivery[], readies: Array<[string, string | null | undefined]> } {
  const got: Delivery[] = []
  const readies: Array<[string, string | null | undefined]> = []
  const listener: BusListener = {
    deliver: d => { got.push(d) },
    advance: () => { throw new Error('no outage in single mode') },
    head: () => null,
    ready: (log, head) => { readies.push([log, head]) },
    lost: () => { throw new Error('no lost history in single mode') },
    paced
  }
  const bus = new LocalBus({ historySize, historyTtlMs: 0, listener })
  return { bus, got, readies }
}

const view = (d: Delivery): object => ({ log: d.log, position: d.position, uid: d.uid, topics: d.topics, priors: d.priors, body: d.body.toString() })

t.test('publish gives increasing positions and delivers at once', async t => {
  const { bus, got } = setup()
  t.teardown(() => bus.close())
  const r = await bus.publish([
    { topics: ['a'], body: 'data: 1\n\n' },
    { topics: null, body: 'data: 2\n\n' }
  ])
  t.equal(r.fanout, 'local')
  t.equal(r.ids.length, 2)
  t.ok(r.ids.every(id => id !== null && isEventId(id)))
  t.ok(compareIds(r.ids[0]!, r.ids[1]!) < 0, 'in publish order')
  t.same(got.map(view), [
    { log: 'a', position: r.ids[0], uid: null, topics: ['a'], priors: null, body: 'data: 1\n\n' },
    { log: '*', position: r.ids[1], uid: null, topics: null, priors: null, body: 'data: 2\n\n' }
  ])
  t.equal(bus.mode, 'single')
})

t.test('an event of several topics: one Delivery per log, one uid shared by the copies', async t => {
  const { bus, got } = setup()
  t.teardown(() => bus.close())
  const r = await bus.publish([{ topics: ['b', 'a'], body: 'data: both\n\n' }])
  t.equal(got.length, 2)
  t.same(got.map(d => d.log), ['b', 'a'])
  t.ok(got.every(d => d.position === r.ids[0]), 'the position is the id the publisher got')
  t.not(got[0].uid, null)
  t.equal(got[0].uid, got[1].uid)
  t.ok(got.every(d => d.topics !== null && d.topics.join() === 'b,a'), 'each copy knows all its topics')
  t.ok(got.every(d => d.body.toString() === 'data: both\n\n'))
  t.same(got.map(d => d.priors), [r.ids[0], ''], 'priors: its (one) position in each log that sorts before this one')
  const single = await bus.publish([{ topics: ['a'], body: 'data: one\n\n' }])
  t.equal(got[2].uid, null, 'one topic: no uid')
  t.equal(got[2].priors, null, 'one topic: no priors')
  const three = await bus.publish([{ topics: ['c', 'a', 'b'], body: 'data: three\n\n' }])
  const p = three.ids[0]!
  t.same(got.slice(3).map(d => [d.log, d.priors]), [['c', `${p},${p}`], ['a', ''], ['b', p]], 'the same position repeated, once per earlier log')
  t.ok(compareIds(single.ids[0]!, r.ids[0]!) > 0)
})

t.test('history is per log: each log has its events, after a position', async t => {
  const { bus } = setup(2)
  t.teardown(() => bus.close())
  const { ids } = await bus.publish([
    { topics: ['a'], body: 'data: a1\n\n' },
    { topics: ['a', 'b'], body: 'data: ab\n\n' },
    { topics: ['b'], body: 'data: b1\n\n' },
    { topics: null, body: 'data: all\n\n' }
  ])
  const a = await bus.history('a', null)
  t.same(a.events.map(d => d.body.toString()), ['data: a1\n\n', 'data: ab\n\n'])
  t.equal(a.gap, false)
  t.equal(a.last, ids[1])
  const b = await bus.history('b', ids[1])
  t.same(b.events.map(d => d.body.toString()), ['data: b1\n\n'])
  t.equal(b.gap, false)
  t.same((await bus.history('*', null)).events.map(d => d.position), [ids[3]])
  t.same(await bus.history('a', ids[1]), { events: [], gap: false, last: ids[1] })
  await bus.publish([{ topics: ['a'], body: 'data: a2\n\n' }, { topics: ['a'], body: 'data: a3\n\n' }])
  const trimmed = await bus.history('a', ids[0])
  t.equal(trimmed.gap, true, 'historySize per log: a1 and ab were trimmed from a')
  t.same(trimmed.events.map(d => d.body.toString()), ['data: a2\n\n', 'data: a3\n\n'])
  t.equal((await bus.history('b', ids[1])).gap, false, 'b kept its own history')
  t.equal((await bus.history('a', undefined)).gap, true)
})

t.test('watch tells the listener the log is ready, at its last position', async t => {
  const { bus, readies } = setup()
  t.teardown(() => bus.close())
  bus.watch('a')
  const { ids } = await bus.publish([{ topics: ['a'], body: 'data: 1\n\n' }, { topics: ['a', 'b'], body: 'data: 2\n\n' }])
  bus.watch('b')
  bus.watch('a')
  const asBus: Bus = bus
  asBus.unwatch('a')
  t.same(readies, [['a', null], ['b', ids[1]], ['a', ids[1]]])
})

t.test('publishes of one turn are delivered at once and answered together at the turn\'s end', async t => {
  const { bus, got } = setup()
  t.teardown(() => bus.close())
  const order: string[] = []
  setImmediate(() => order.push('turn ended'))
  const a = bus.publish([{ topics: ['a'], body: 'data: 1\n\n' }]).then(() => order.push('answer 1'))
  const b = bus.publish([{ topics: ['a'], body: 'data: 2\n\n' }]).then(() => order.push('answer 2'))
  t.equal(got.length, 2, 'both delivered before either answer')
  for (let i = 0; i < 10; i++) await Promise.resolve()
  t.same(order, [], 'no answer within the turn')
  await Promise.all([a, b])
  t.same(order, ['turn ended', 'answer 1', 'answer 2'], 'both answers after the turn, in publish order')
  await bus.publish([{ topics: ['a'], body: 'data: 3\n\n' }])
  t.equal(got.length, 3, 'a publish in a later turn gets an answer of its own')
})

t.test('under a fan-out the answers wait for the hub\'s pace, one wait for a turn\'s publishes', async t => {
  let gate: Promise<void> | null = null
  let open = (): void => {}
  let asked = 0
  const { bus, got } = setup(100, () => { asked++; return gate })
  t.teardown(() => bus.close())
  gate = new Promise(resolve => { open = resolve })
  const answered: string[] = []
  const a = bus.publish([{ topics: ['a'], body: 'data: 1\n\n' }]).then(() => answered.push('1'))
  const b = bus.publish([{ topics: ['a'], body: 'data: 2\n\n' }]).then(() => answered.push('2'))
  t.equal(got.length, 2, 'delivered at once')
  for (let i = 0; i < 10; i++) await new Promise(resolve => setImmediate(resolve))
  t.same(answered, [], 'no answer while the hub has not written its share')
  t.equal(asked, 1, 'the turn asked once')
  open()
  await Promise.all([a, b])
  t.same(answered, ['1', '2'], 'then both, in publish order')
  gate = null
  await bus.publish([{ topics: ['a'], body: 'data: 3\n\n' }])
  t.equal(asked, 2, 'no fan-out under way: answered after the turn as before')
})
