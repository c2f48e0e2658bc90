import t from 'tap'
import { compareIds, IdClock, idMillis, isEventId } from '../../src/event-id.js'

t.test('ids order by time, then sequence', async t => {
  t.ok(isEventId('1732600000000-0'))
  t.notOk(isEventId('abc'))
  t.notOk(isEventId('1-2-3'))
  t.notOk(isEventId('1-0\n'))
  t.ok(compareIds('2-0', '10-0') < 0, 'numeric, not lexical')
  t.ok(compareIds('5-10', '5-9') > 0)
  t.equal(compareIds('5-1', '5-1'), 0)
  const clock = new IdClock()
  t.equal(clock.next(100), '100-0')
  t.equal(clock.next(100), '100-1')
  t.equal(clock.next(99), '100-2', 'a clock going back does not reorder ids')
  t.equal(clock.next(101), '101-0')
})

t.test('isEventId: two runs of at most 15 digits, nothing around them', async t => {
  t.ok(isEventId('123456789012345-123456789012345'))
  t.notOk(isEventId('1234567890123456-0'), 'a 16-digit clock')
  for (const bad of ['', '1-', '-1', '1', ' 1-0', '1-0 ', '+1-0', '1.5-0', '1-0-0']) t.notOk(isEventId(bad), JSON.stringify(bad))
})

t.test('idMillis reads the clock part; IdClock hands out valid, increasing ids', async t => {
  t.equal(idMillis('1732600000000-7'), 1732600000000)
  const clock = new IdClock()
  const ids = Array.from({ length: 1000 }, () => clock.next())
  t.ok(ids.every(isEventId), 'every id is valid')
  t.ok(ids.every((id, i) => i === 0 || compareIds(ids[i - 1], id) < 0), 'each one after the one before')
  t.ok(Math.abs(idMillis(ids[0]) - Date.now()) < 1000, 'from the local clock by default')
})
