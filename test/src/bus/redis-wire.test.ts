// The bytes between the Redis bus and its Lua: pack() what a publish sends, MessageReader
// what Pub/Sub carries back, parseHistory what a history read returns. The last tests run
// the real scripts on a real redis-server, so the Lua and the readers cannot drift.
import { Redis } from 'ioredis'
import { once } from 'node:events'
import t from 'tap'
import type { Outgoing } from '../../../src/bus/bus.js'
import { HISTORY_SCRIPT, PUBLISH_SCRIPT } from '../../../src/bus/redis-scripts.js'
import { MessageReader, pack, parseHistory, parseTopicsField } from '../../../src/bus/redis-wire.js'
import { compareIds } from '../../../src/event-id.js'
import { encodeBody, encodeFrame } from '../../../src/frame.js'
import { TestRedis } from '../../helpers/redis.js'

interface ReadRecord { id: string, topics: string[] | null, fromA: boolean, frame: string }

function readAll (message: Buffer, reader = new MessageReader()): ReadRecord[] {
  const out: ReadRecord[] = []
  reader.reset(message)
  while (reader.next()) out.push({ id: reader.id, topics: reader.readTopics(), fromA: reader.isFrom('instance-a'), frame: reader.frame().toString() })
  return out
}

t.test('parseTopicsField: empty is a broadcast, else names joined by commas', async t => {
  t.equal(parseTopicsField(''), null)
  t.same(parseTopicsField('orders'), ['orders'])
  t.same(parseTopicsField('a,b:c,d/e'), ['a', 'b:c', 'd/e'])
})

t.test('pack writes each event as topics, origin, body length in bytes, body', async t => {
  const body = 'data: ü 🚀\ndata: two\n\n'
  const packed = pack([{ topics: ['a', 'b'], body }, { topics: null, body: 'data: x\n\n' }], 'instance-a')
  t.equal(packed.toString(), `a,b\ninstance-a\n25\n${body}\ninstance-a\n9\ndata: x\n\n`, 'the length counts bytes (25), not characters (22)')
  t.equal(pack([], '').length, 0)
})

t.test('MessageReader walks records of id, topics, origin, frame length, frame', async t => {
  const frame1 = 'id: 5-0\ndata: zwei\ndata: Zeilen ü\n\n'
  const frame2 = 'id: 5-1\ndata: 🚀\n\n'
  const message = Buffer.from(`5-0\norders,users\n\n${Buffer.byteLength(frame1)}\n${frame1}5-1\n\ninstance-a\n${Buffer.byteLength(frame2)}\n${frame2}`)
  const reader = new MessageReader()
  t.same(readAll(message, reader), [
    { id: '5-0', topics: ['orders', 'users'], fromA: false, frame: frame1 },
    { id: '5-1', topics: null, fromA: true, frame: frame2 }
  ])
  t.notOk(reader.next(), 'nothing after the last record')
  t.same(readAll(Buffer.from('6-0\nx\ninstance-ab\n6\ndata: ')).map(r => [r.id, r.fromA]), [['6-0', false]], 'reused for the next message; an origin is compared whole')
})

t.test('parseHistory: ids once each, in id order, with their frames, gap and last id', async t => {
  const reply = ['9-0', 0, '5-1', 'a', '', 'data: b\n\n', '10-0', '', 'instance-a', 'data: c\n\n', '5-1', 'a', '', 'data: b\n\n', '5-0', 'a,b', '', 'data: a\n\n']
  const { events, gap, last } = parseHistory(reply)
  t.same(events.map(e => e.id), ['5-0', '5-1', '10-0'], 'numeric order, the repeat dropped')
  t.same(events.map(e => e.topics), [['a', 'b'], ['a'], null])
  t.same(events.map(e => e.origin), ['', '', 'instance-a'])
  t.same(events.map(e => e.frame.toString()), ['id: 5-0\ndata: a\n\n', 'id: 5-1\ndata: b\n\n', 'id: 10-0\ndata: c\n\n'])
  t.equal(gap, false)
  t.equal(last, '9-0')
  t.same(parseHistory(['', 1]), { events: [], gap: true, last: null }, 'an empty Redis: no last id')
})

t.test('with a real Redis', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const pub = new Redis(redis.url)
  const sub = new Redis(redis.url)
  t.teardown(() => { pub.disconnect(); sub.disconnect() })
  const prefix = 'wire:'
  const channel = `${prefix}events`
  await sub.subscribe(channel)
  const publish = async (events: Outgoing[], origin: string): Promise<{ ids: string[], message: Buffer }> => {
    const message = once(sub, 'messageBuffer').then(([, m]) => m as Buffer)
    const ids = await pub.eval(PUBLISH_SCRIPT, 1, `${prefix}last`, prefix, 100, 0, channel, pack(events, origin)) as string[]
    return { ids, message: await message }
  }
  const events: Outgoing[] = [
    { topics: ['orders'], body: encodeBody('created', 'line one\nzweite Zeile: ü → 🚀\r\nthird\n') },
    { topics: ['orders', 'users'], body: encodeBody(undefined, { name: 'é', emoji: '🚀', text: 'a\nb' }) },
    { topics: null, body: encodeBody(undefined, 'to everyone') },
    { topics: ['other'], body: encodeBody('e', '') }
  ]

  await t.test('PUBLISH_SCRIPT sends one message that MessageReader reads back byte for byte', async t => {
    const { ids, message } = await publish(events, '')
    t.equal(ids.length, 4)
    t.same(ids, [...ids].sort(compareIds), 'ids in the order the events were packed')
    t.same(readAll(message), events.map((e, i) => ({ id: ids[i], topics: e.topics, fromA: false, frame: encodeFrame(ids[i], e.body).toString() })))
    const again = await publish([events[0]], 'instance-a')
    t.ok(compareIds(again.ids[0], ids[3]) > 0, 'a later call gets a later id')
    t.same(readAll(again.message).map(r => r.fromA), [true], 'the origin comes back with the record')
  })

  await t.test('HISTORY_SCRIPT returns what PUBLISH_SCRIPT stored, as parseHistory reads it', async t => {
    const history = async (topics: string[], after: string): Promise<ReturnType<typeof parseHistory>> =>
      parseHistory(await pub.eval(HISTORY_SCRIPT, 1, `${prefix}last`, after, 0, 1, `${prefix}b`, ...topics.map(x => `${prefix}t:${x}`)) as Array<string | number>)
    const { ids } = await publish(events, '')
    const read = await history(['orders', 'users'], '0-0')
    t.equal(read.gap, false)
    t.equal(read.last, ids[3])
    const mine = read.events.filter(e => ids.includes(e.id))
    t.same(mine.map(e => e.id), ids.slice(0, 3), 'the events of its topics and the broadcast, once each, in order')
    t.same(mine.map(e => e.topics), events.slice(0, 3).map(e => e.topics))
    t.same(mine.map(e => e.frame.toString()), events.slice(0, 3).map((e, i) => encodeFrame(ids[i], e.body).toString()), 'the same bytes as the live message')
    t.same((await history(['orders'], ids[1])).events.map(e => e.id), [ids[2]], 'only what came after the id')
    t.same(await history(['orders'], '99999999999999-0'), { events: [], gap: true, last: ids[3] }, 'an id from the future is unknown: a gap')
  })
})
