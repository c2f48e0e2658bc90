// Per-log history in memory (single-instance mode): what a resume from a position gets.
import t from 'tap'
import { MemoryHistory } from '../../../src/bus/memory-history.js'
import type { Delivery } from '../../../src/hub.js'

const ev = (log: string, position: string, topics: string[] | null = log === '*' ? null : [log]): Delivery =>
  ({ log, position, uid: null, topics, priors: null, body: Buffer.from(`data: ${position}\n\n`) })
const positions = (r: { events: Delivery[] }): Array<string | null> => r.events.map(e => e.position)

t.test('reads what came after a position still in its log, log by log', async t => {
  const h = new MemoryHistory(10, 0)
  h.append(ev('a', '1-0'))
  h.append(ev('b', '2-0'))
  h.append(ev('a', '3-0'))
  h.append(ev('*', '4-0'))
  h.append(ev('a', '5-0'))
  const r = h.read('a', '1-0')
  t.same(positions(r), ['3-0', '5-0'])
  t.equal(r.gap, false)
  t.equal(r.last, '5-0')
  t.same(r.events[0].body.toString(), 'data: 3-0\n\n', 'the event as appended')
  t.same(h.read('a', '5-0'), { events: [], gap: false, last: '5-0' }, 'up to date')
  t.same(positions(h.read('b', '2-0')), [])
  t.same(positions(h.read('*', null)), ['4-0'])
  t.equal(h.last('a'), '5-0')
  t.equal(h.last('nope'), null)
})

t.test('null (nothing seen) is the whole log, unless some of it was trimmed', async t => {
  const h = new MemoryHistory(3, 0)
  t.same(h.read('a', null), { events: [], gap: false, last: null }, 'a log never written: nothing missed')
  h.append(ev('a', '1-0'))
  h.append(ev('a', '2-0'))
  const all = h.read('a', null)
  t.equal(all.gap, false)
  t.equal(all.last, '2-0')
  t.same(positions(all), ['1-0', '2-0'])
  h.append(ev('a', '3-0'))
  h.append(ev('a', '4-0'))
  const r = h.read('a', null)
  t.equal(r.gap, true, '1-0 was trimmed: the reader may have missed it')
  t.same(positions(r), ['2-0', '3-0', '4-0'], 'then what remains')
})

t.test('a trimmed position is a gap, followed by what remains after it', async t => {
  const h = new MemoryHistory(2, 0)
  for (let i = 1; i <= 5; i++) h.append(ev('a', `${i}-0`))
  const r = h.read('a', '1-0')
  t.equal(r.gap, true)
  t.same(positions(r), ['4-0', '5-0'])
  t.equal(r.last, '5-0')
  const r2 = h.read('a', '2-0')
  t.equal(r2.gap, true)
  t.same(positions(r2), ['4-0', '5-0'])
})

t.test('the newest trimmed position itself: nothing missed, no gap', async t => {
  const h = new MemoryHistory(2, 0)
  for (let i = 1; i <= 5; i++) h.append(ev('a', `${i}-0`))
  const r = h.read('a', '3-0')
  t.equal(r.gap, false)
  t.same(positions(r), ['4-0', '5-0'])
  t.equal(r.last, '5-0')
})

t.test('an unknown or future position is a gap', async t => {
  const h = new MemoryHistory(10, 0)
  for (let i = 1; i <= 3; i++) h.append(ev('a', `${i}-0`))
  t.same(h.read('a', '9-0'), { events: [], gap: true, last: '3-0' }, 'from the future (a history lost and begun again)')
  const between = h.read('a', '1-5')
  t.equal(between.gap, true, 'a position that was never in this log')
  t.same(positions(between), ['2-0', '3-0'], 'what remains after it follows')
  t.same(h.read('other', '1-0'), { events: [], gap: true, last: null }, 'empty history (after a restart): unknown')
  t.same(positions(h.read('a', '2-0')), ['3-0'], 'each log has its own positions: 2-0 is in a')
  t.equal(h.read('b', '2-0').gap, true, '...and not in b')
})

t.test('undefined (an untrusted position) is always a gap, with the newest position', async t => {
  const h = new MemoryHistory(10, 0)
  h.append(ev('a', '1-0'))
  h.append(ev('a', '2-0'))
  t.same(h.read('a', undefined), { events: [], gap: true, last: '2-0' })
  t.same(h.read('never', undefined), { events: [], gap: true, last: null })
})

t.test('events older than the age limit leave history; resuming from before them is a gap', async t => {
  const h = new MemoryHistory(100, 1000)
  h.append(ev('a', '1000-0'), 1000)
  h.append(ev('a', '5000-0'), 5000)
  const r = h.read('a', '500-0', 5500)
  t.same(positions(r), ['5000-0'])
  t.equal(r.gap, true)
  t.same(positions(h.read('a', null, 5500)), ['5000-0'])
  t.equal(h.read('a', null, 5500).gap, true, 'nothing seen, but 1000-0 expired')
  const fromExpired = h.read('a', '1000-0', 5500)
  t.equal(fromExpired.gap, false, 'from the newest expired one itself: no gap')
  t.same(positions(fromExpired), ['5000-0'])
  const late = h.read('a', '5000-0', 7000)
  t.same(late, { events: [], gap: false, last: '5000-0' }, 'all expired, the reader had the last: nothing missed')
})

t.test('sweep drops expired entries and logs idle longer than the age', async t => {
  const h = new MemoryHistory(100, 1000)
  h.append(ev('a', '1000-0'), 1000)
  h.append(ev('b', '9500-0'), 9500)
  h.sweep(10_000)
  t.equal(h.last('a'), null, 'the idle log is forgotten')
  t.same(h.read('a', null, 10_000), { events: [], gap: false, last: null })
  t.same(positions(h.read('b', null, 10_000)), ['9500-0'], 'a recent log stays')
  const keep = new MemoryHistory(100, 0)
  keep.append(ev('a', '1-0'), 1)
  keep.sweep(1e12)
  t.same(positions(keep.read('a', null, 1e12)), ['1-0'], 'no age limit: nothing expires')
})
