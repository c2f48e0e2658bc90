import t from 'tap'
import { MemoryHistory } from '../../../src/bus/memory-history.js'

const data = (r: { events: Array<{ frame: Buffer }> }): string[] => r.events.map(e => e.frame.toString().split('\n')[0])

t.test('reads what came after an id, for the topics and broadcasts, once each, in order', async t => {
  const h = new MemoryHistory(10, 0)
  h.append('1-0', ['a'], 'data: 1\n\n')
  h.append('2-0', ['b'], 'data: 2\n\n')
  h.append('3-0', null, 'data: 3\n\n')
  h.append('4-0', ['a', 'b'], 'data: 4\n\n')
  const r = h.read(['a', 'b'], '1-0')
  t.same(data(r), ['id: 2-0', 'id: 3-0', 'id: 4-0'])
  t.equal(r.gap, false)
  t.same(data(h.read(['a'], '1-0')), ['id: 3-0', 'id: 4-0'])
  t.same(h.read(['a'], '4-0'), { gap: false, events: [], last: '4-0' }, 'up to date')
})

t.test('a gap is reported when events after the id were trimmed, or the id is unknown', async t => {
  const h = new MemoryHistory(2, 0)
  for (let i = 1; i <= 5; i++) h.append(`${i}-0`, ['a'], `data: ${i}\n\n`)
  t.equal(h.read(['a'], '1-0').gap, true)
  t.equal(h.read(['a'], '3-0').gap, false, 'the newest trimmed id itself: nothing missed')
  t.same(data(h.read(['a'], '3-0')), ['id: 4-0', 'id: 5-0'])
  t.equal(h.read(['a'], '9-0').gap, true, 'an id from the future is unknown')
  t.equal(new MemoryHistory(2, 0).read(['a'], '1-0').gap, true, 'empty history (after a restart): unknown')
})

t.test('events older than the age limit leave history, and resuming from before them is a gap', async t => {
  const h = new MemoryHistory(100, 1000)
  h.append('1000-0', ['a'], 'data: old\n\n', 1000)
  h.append('5000-0', ['a'], 'data: new\n\n', 5000)
  const r = h.read(['a'], '500-0', 5500)
  t.same(data(r), ['id: 5000-0'])
  t.equal(r.gap, true)
  h.sweep(10_000)
  t.same(h.read(['a'], '4000-0', 10_000).events, [])
})
