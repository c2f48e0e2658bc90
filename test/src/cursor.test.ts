// A stream's cursor: one position per log, joined by '.', as the client's Last-Event-ID.
import t from 'tap'
import { BROADCAST, decodeCursor, encodeCursor, streamLogs } from '../../src/cursor.js'

t.test('streamLogs: topics deduplicated and sorted, then the broadcasts', async t => {
  t.same(streamLogs(['b', 'a', 'b', 'c']), ['a', 'b', 'c', BROADCAST])
  t.same(streamLogs([]), [BROADCAST], 'a stream of no topic reads only the broadcasts')
  t.same(streamLogs(['z', 'a']), streamLogs(['a', 'z']), 'the order asked for does not matter')
  t.equal(BROADCAST, '*')
})

t.test('encode: positions joined by dots, nothing seen is empty, trailing empties dropped', async t => {
  t.equal(encodeCursor(['1-0']), '1-0')
  t.equal(encodeCursor(['1-0', '2-3']), '1-0.2-3')
  t.equal(encodeCursor(['1-0', null, '3-0']), '1-0..3-0')
  t.equal(encodeCursor([null, '3-0']), '.3-0')
  t.equal(encodeCursor(['1-0', null, '']), '1-0', 'a one-topic stream with no broadcast yet: its topic position alone')
  t.equal(encodeCursor([null, null]), '')
  t.equal(encodeCursor([]), '')
})

t.test('decode gives back what encode wrote, padded with "" for the dropped empties', async t => {
  const cases: Array<Array<string | null>> = [
    ['1-0', '2-0', '3-0'],
    ['1-0', null, '3-0'],
    [null, null, '3-0'],
    ['1-0', null, null],
    [null, null, null],
    ['123456789012345-123456789012345', '0-0', '999999999999999-999999999999999']
  ]
  for (const positions of cases) {
    const id = encodeCursor(positions)
    t.same(decodeCursor(id, positions.length), positions.map(p => p ?? ''), `round trip of ${JSON.stringify(id)}`)
  }
  t.same(decodeCursor('5-0', 2), ['5-0', ''], 'an old one-log id is the first log\'s position')
})

t.test('more parts than logs: the topics changed, no part can be trusted', async t => {
  t.same(decodeCursor('1-0.2-0.3-0', 2), [undefined, undefined])
  t.same(decodeCursor('1-0.', 1), [undefined], 'even an empty extra part')
})

t.test('what this service never writes is null', async t => {
  for (const bad of ['abc', '1-0.x', '1-0,2-0', '1-0 ', ' 1-0', '-1-0', '1-', '1-0.2', '1234567890123456-0', '1-0\n2-0']) {
    t.equal(decodeCursor(bad, 3), null, JSON.stringify(bad))
  }
})

t.test('length bound: a huge Last-Event-ID is refused before it is split', async t => {
  const longest = Array.from({ length: 3 }, () => '999999999999999-999999999999999').join('.')
  t.same(decodeCursor(longest, 3), longest.split('.'), 'the longest real cursor of 3 logs passes')
  const many = Array.from({ length: 40 }, () => '1-0').join('.')
  t.same(decodeCursor(many, 2), null, 'past count*34+64 characters: null, not "too many parts"')
  t.ok(many.length > 2 * 34 + 64)
  const few = Array.from({ length: 10 }, () => '1-0').join('.')
  t.same(decodeCursor(few, 2), [undefined, undefined], 'under the bound, too many parts is untrusted, not refused')
})
