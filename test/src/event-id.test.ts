import t from 'tap'
import { compareIds, IdClock, isEventId } from '../../src/event-id.js'

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
