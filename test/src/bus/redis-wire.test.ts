// The bytes between the Redis bus and its Lua: unit tests of the codec, then the scripts
// themselves on a real redis-server, read back with the same codec.
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import type { Outgoing } from '../../../src/bus/bus.js'
import { HISTORY_SCRIPT, PUBLISH_SCRIPT, SETTLE_SCRIPT } from '../../../src/bus/redis-scripts.js'
import { keyLog, logKey, MessageReader, pack, parseHistory, parseTopicsField } from '../../../src/bus/redis-wire.js'
import { TestRedis } from '../../helpers/redis.js'

interface Record { position: string, uid: string | null, priors: string | null, topics: string[] | null, origin: string, body: string }

function readAll (message: Buffer): Record[] {
  const r = new MessageReader()
  r.reset(message)
  const out: Record[] = []
  while (r.next()) out.push({ position: r.position, uid: r.uid, priors: r.priors, topics: r.topics, origin: r.origin, body: r.body.toString('utf8') })
  return out
}

/** A Pub/Sub message as PUBLISH_SCRIPT writes it. */
function message (records: Array<Omit<Record, 'uid' | 'priors'> & { uid: string, priors: string }>): Buffer {
  return Buffer.concat(records.map(r => Buffer.concat([
    Buffer.from(`${r.position}\n${r.uid}\n${r.priors}\n${r.topics === null ? '' : r.topics.join(',')}\n${r.origin}\n${Buffer.byteLength(r.body)}\n`),
    Buffer.from(r.body)
  ])))
}

const multiLine = 'event: note\ndata: line one\ndata: żółw 🐢 two\n\n'

t.test('logKey and keyLog: a log is its hash tag, and back', async t => {
  t.equal(logKey('sse:', 'news'), 'sse:{news}')
  t.equal(logKey('sse:', '*'), 'sse:{*}')
  t.equal(keyLog('sse:', 'sse:{news}'), 'news')
  t.equal(keyLog('sse:', logKey('sse:', 'a.b-c:d')), 'a.b-c:d')
  t.equal(keyLog('sse:', 'other:{news}'), null, 'another prefix')
  t.equal(keyLog('sse:', 'sse:news'), null, 'no hash tag')
  t.equal(keyLog('sse:', 'sse:{news'), null)
  t.equal(keyLog('', '{x}'), 'x')
})

t.test('parseTopicsField: "" is a broadcast, else names joined by ","', async t => {
  t.equal(parseTopicsField(''), null)
  t.same(parseTopicsField('a'), ['a'])
  t.same(parseTopicsField('a,b,c'), ['a', 'b', 'c'])
})

t.test('pack: "<uid>\\n<priors>\\n<topics>\\n<origin>\\n<body bytes>\\n<body>" per event, as one Buffer', async t => {
  const events: Array<{ event: Outgoing, uid: string, priors: string }> = [
    { event: { topics: ['a'], body: 'data: 1\n\n' }, uid: '', priors: '' },
    { event: { topics: ['a', 'b'], body: multiLine }, uid: 'u1', priors: '4-0' },
    { event: { topics: null, body: '' }, uid: '', priors: '' }
  ]
  const buf = pack(events, 'inst-1')
  t.ok(Buffer.isBuffer(buf))
  const bytes = Buffer.byteLength(multiLine)
  t.not(bytes, multiLine.length, 'the body has multi-byte characters')
  t.equal(buf.toString('utf8'),
    '\n\na\ninst-1\n9\ndata: 1\n\n' +
    `u1\n4-0\na,b\ninst-1\n${bytes}\n${multiLine}` +
    '\n\n\ninst-1\n0\n')
  t.equal(pack([], '').length, 0)
})

t.test('MessageReader walks the records of one message, bodies byte-exact', async t => {
  const records = [
    { position: '1-0', uid: '', priors: '', topics: ['a'], origin: '', body: 'data: 1\n\n' },
    { position: '1-1', uid: 'u1', priors: '1-0', topics: ['a', 'b'], origin: 'inst-1', body: multiLine },
    { position: '2-0', uid: '', priors: '', topics: null, origin: '', body: '' },
    { position: '3-0', uid: '', priors: '', topics: ['ünï'], origin: '', body: 'data: \n\n\n\n' },
    { position: '3-1', uid: 'u2', priors: '', topics: ['a', 'b'], origin: '', body: 'data: first\n\n' }
  ]
  t.same(readAll(message(records)), records.map(r => ({ ...r, uid: r.uid === '' ? null : r.uid, priors: r.uid === '' ? null : r.priors })),
    'priors null without a uid; "" for the copy in the first log of its topics')
  const r = new MessageReader()
  r.reset(Buffer.alloc(0))
  t.equal(r.next(), false, 'an empty message has no record')
  r.reset(message([records[1]]))
  t.equal(r.next(), true)
  t.equal(r.body.toString(), multiLine)
  t.equal(r.next(), false)
  r.reset(message([records[0]]))
  t.equal(r.next(), true, 'reused for the next message')
  t.equal(r.position, '1-0')
  t.equal(r.uid, null)
  t.equal(r.priors, null, 'priors of the previous record do not linger')
})

t.test('pack then MessageReader: the records a publish sends back read as what was packed, priors included', async t => {
  const events: Array<{ event: Outgoing, uid: string, priors: string }> = [
    { event: { topics: ['c', 'a', 'b'], body: multiLine }, uid: 'u7', priors: '9-0,9-1' },
    { event: { topics: ['a'], body: 'data: one\n\n' }, uid: '', priors: '' },
    { event: { topics: ['b', 'a'], body: 'data: ab\n\n' }, uid: 'u8', priors: '' },
    { event: { topics: null, body: 'data: all\n\n' }, uid: '', priors: '' }
  ]
  t.same(Buffer.concat(events.map(e => pack([e], 'inst-9'))), pack(events, 'inst-9'), 'one event after another')
  // PUBLISH_SCRIPT's records: each packed event after its position.
  const positions = ['10-0', '10-1', '10-2', '11-0']
  const sent = Buffer.concat(events.map((e, i) => Buffer.concat([Buffer.from(`${positions[i]}\n`), pack([e], 'inst-9')])))
  t.same(readAll(sent), events.map(({ event, uid, priors }, i) => ({
    position: positions[i],
    uid: uid === '' ? null : uid,
    priors: uid === '' ? null : priors,
    topics: event.topics,
    origin: 'inst-9',
    body: event.body
  })))
})

t.test('parseHistory reads HISTORY_SCRIPT\'s reply', async t => {
  const h = parseHistory('b', ['6-0', 0, '4-0', '', '', 'b', '', 'data: 4\n\n', '5-1', 'u9', '5-0', 'a,b', 'inst', multiLine, '6-0', 'u10', '', 'b,c', '', 'data: 6\n\n'])
  t.equal(h.last, '6-0')
  t.equal(h.gap, false)
  t.same(h.events.map(e => ({ ...e, body: e.body.toString() })), [
    { log: 'b', position: '4-0', uid: null, priors: null, topics: ['b'], origin: '', body: 'data: 4\n\n' },
    { log: 'b', position: '5-1', uid: 'u9', priors: '5-0', topics: ['a', 'b'], origin: 'inst', body: multiLine },
    { log: 'b', position: '6-0', uid: 'u10', priors: '', topics: ['b', 'c'], origin: '', body: 'data: 6\n\n' }
  ])
  t.same(parseHistory('b', ['', 1]), { last: null, gap: true, events: [] }, 'a log that does not exist')
  t.same(parseHistory('b', ['3-0', 0]), { last: '3-0', gap: false, events: [] })
})

interface Commands {
  ssePublish: (key: string, maxlen: number, ttl: number, packed: Buffer, deadline?: number | '', tag?: string) => Promise<string[]>
  ssePublishLogs: (keys: number, ...args: Array<string | number | Buffer>) => Promise<Array<string | string[]>>
  sseHistory: (key: string, after: string, mode: string) => Promise<Array<string | number>>
  sseSettle: (key: string, deadline: number, tag: string, elapsedMs: number, ttl: number, maxlen: number) => Promise<Array<string | number>>
}

/** A redis-server of the test's own and a connection with both scripts defined, as RedisBus defines them. */
async function scriptsOnRedis (t: Test): Promise<{ server: TestRedis, pub: Redis & Commands }> {
  const server = await TestRedis.start()
  t.teardown(() => server.stop())
  const pub = new Redis(server.url) as Redis & Commands
  t.teardown(() => pub.disconnect())
  pub.defineCommand('ssePublish', { numberOfKeys: 1, lua: PUBLISH_SCRIPT })
  pub.defineCommand('ssePublishLogs', { lua: PUBLISH_SCRIPT })
  pub.defineCommand('sseHistory', { numberOfKeys: 1, lua: HISTORY_SCRIPT })
  pub.defineCommand('sseSettle', { numberOfKeys: 1, lua: SETTLE_SCRIPT })
  return { server, pub }
}

t.test('the scripts on a real Redis: what is published is what subscribers and history read', async t => {
  const { server, pub } = await scriptsOnRedis(t)
  const sub = new Redis(server.url)
  t.teardown(() => sub.disconnect())
  const key = logKey('t:', 'news')
  const got: Buffer[] = []
  sub.on('smessageBuffer', (channel: Buffer, msg: Buffer) => { if (channel.toString() === key) got.push(msg) })
  await sub.ssubscribe(key)

  const publish = async (events: Array<{ event: Outgoing, uid: string, priors: string }>, maxlen = 100, ttl = 0, origin = ''): Promise<string[]> =>
    await pub.ssePublish(key, maxlen, ttl, pack(events, origin))
  const history = async (after: string, mode = 'read'): Promise<ReturnType<typeof parseHistory>> =>
    parseHistory('news', await pub.sseHistory(key, after, mode))
  const until = async (n: number): Promise<void> => {
    for (let i = 0; i < 200 && got.length < n; i++) await new Promise(resolve => setTimeout(resolve, 10))
  }
  const bodies = (h: ReturnType<typeof parseHistory>): string[] => h.events.map(e => e.body.toString('utf8'))

  t.same(await history(''), { last: null, gap: false, events: [] }, 'no log yet, nothing seen: no gap')
  t.same(await history('1-0'), { last: null, gap: true, events: [] }, 'no log yet, a position: its log was lost')

  // The multi-topic event's copy in news: arts sorts first, so its copy there was written first.
  const batch = [
    { event: { topics: ['news'], body: 'data: one\n\n' }, uid: '', priors: '' },
    { event: { topics: ['news', 'arts'], body: multiLine }, uid: 'u-1', priors: '1-7' },
    { event: { topics: ['news'], body: 'data: \n\n' }, uid: '', priors: '' }
  ]
  const ids = await publish(batch, 100, 0, 'inst-a')
  t.equal(ids.length, 3)
  await until(1)
  t.equal(got.length, 1, 'one Pub/Sub message per call')
  t.same(readAll(got[0]), [
    { position: ids[0], uid: null, priors: null, topics: ['news'], origin: 'inst-a', body: 'data: one\n\n' },
    { position: ids[1], uid: 'u-1', priors: '1-7', topics: ['news', 'arts'], origin: 'inst-a', body: multiLine },
    { position: ids[2], uid: null, priors: null, topics: ['news'], origin: 'inst-a', body: 'data: \n\n' }
  ], 'MessageReader reads back exactly what was sent')

  const all = await history('')
  t.equal(all.gap, false)
  t.equal(all.last, ids[2])
  t.same(all.events.map(e => e.position), ids)
  t.same(bodies(all), batch.map(b => b.event.body), 'history has the same bodies, multi-byte intact')
  t.same(all.events.map(e => [e.uid, e.priors, e.topics, e.origin]), [[null, null, ['news'], 'inst-a'], ['u-1', '1-7', ['news', 'arts'], 'inst-a'], [null, null, ['news'], 'inst-a']])
  t.same(await pub.xrange(key, ids[1], ids[1]), [[ids[1], ['u', 'u-1', 'p', '1-7', 't', 'news,arts', 'o', 'inst-a', 'b', multiLine, 'c', '']]],
    'the stream entry\'s fields: u, p, t, o, b, and c (the call\'s tag; none given here)')
  const after = await history(ids[0])
  t.same(after.events.map(e => e.position), ids.slice(1), 'after a position: what came after it')
  t.equal(after.gap, false)
  t.same(await history(ids[2]), { last: ids[2], gap: false, events: [] }, 'up to date')
  t.same(await history('', 'head'), { last: ids[2], gap: false, events: [] }, 'head only')

  // MAXLEN 3: five more events leave only the newest three.
  const more: string[] = []
  for (let i = 0; i < 5; i++) {
    await new Promise(resolve => setTimeout(resolve, 2)) // a millisecond each: a position can be made between two of them
    more.push(...await publish([{ event: { topics: ['news'], body: `data: m${i}\n\n` }, uid: '', priors: '' }], 3))
  }
  await until(6)
  t.same(readAll(got[5]).map(r => r.body), ['data: m4\n\n'])
  const kept = more.slice(2)
  const trimmed = await history(ids[1])
  t.equal(trimmed.gap, true, 'a trimmed position: a gap')
  t.same(trimmed.events.map(e => e.position), kept, 'then what remains')
  const fromNothing = await history('')
  t.equal(fromNothing.gap, true, 'nothing seen, but some of the log was trimmed: a gap')
  t.same(fromNothing.events.map(e => e.position), kept)
  const unknown = await history(`${more[3].split('-')[0]}-999`)
  t.equal(unknown.gap, true, 'a position never in the log: a gap')
  t.same(unknown.events.map(e => e.position), [more[4]], 'then what remains after it')
  t.same(bodies(await history(kept[0])), ['data: m3\n\n', 'data: m4\n\n'])
  t.equal((await history(kept[0])).gap, false, 'a position still in the log: no gap')
  // A batch trims as its last append does: exactly MAXLEN remain, the newest.
  const five = await publish(Array.from({ length: 5 }, (_, i) => ({ event: { topics: ['news'], body: `data: b${i}\n\n` }, uid: '', priors: '' })), 4)
  t.equal(await pub.xlen(key), 4, 'a batch of 5 into MAXLEN 4: four entries')
  t.same(bodies(await history('')), ['data: b1\n\n', 'data: b2\n\n', 'data: b3\n\n', 'data: b4\n\n'], 'its newest four')
  const before = await history(more[4])
  t.equal(before.gap, true, 'a reader at the newest position before it: trimmed, a gap')
  t.same(before.events.map(e => e.position), five.slice(1), 'then the four')

  // History lost (FLUSHALL: a restart without persistence, eviction, a failover that dropped writes).
  await pub.flushall()
  t.same(await history(more[4]), { last: null, gap: true, events: [] }, 'the log is gone: a gap')
  const fresh = await publish([{ event: { topics: ['news'], body: 'data: after the loss\n\n' }, uid: '', priors: '' }])
  const lost = await history(more[4])
  t.equal(lost.gap, true, 'a position of the lost log: a gap, though a log exists again')
  t.same(bodies(lost), ['data: after the loss\n\n'])
  t.same(await history(''), { ...(await history('')), gap: false, last: fresh[0] }, 'nothing seen: the new log, no gap')
})

t.test('PUBLISH_SCRIPT with several logs (one Redis): each log its appends and one message, the positions in order; a log Redis refuses keeps nothing, the others are published', async t => {
  const { server, pub } = await scriptsOnRedis(t)
  const sub = new Redis(server.url)
  t.teardown(() => sub.disconnect())
  const keys = ['a', 'b', 'c'].map(log => logKey('m:', log))
  const got = new Map<string, Buffer[]>()
  sub.on('smessageBuffer', (channel: Buffer, msg: Buffer) => got.set(channel.toString(), [...(got.get(channel.toString()) ?? []), msg]))
  await sub.ssubscribe(...keys)
  const events = (log: string, n: number): Buffer => pack(Array.from({ length: n }, (_, i) => ({ event: { topics: [log], body: `data: ${log}${i}\n\n` }, uid: '', priors: '' })), 'inst-m')
  const [seconds, micros] = await pub.time()
  const deadline = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) + 500
  const ids = await pub.ssePublishLogs(3, ...keys, 100, 60_000, events('a', 2), deadline, 'tag-1', events('b', 1), events('c', 3)) as string[]
  t.equal(ids.length, 6, 'every event\'s position')
  const inLog = async (key: string): Promise<Array<[string, string[]]>> => await pub.xrange(key, '-', '+')
  t.same((await inLog(keys[0])).map(([id]) => id), ids.slice(0, 2), 'a: its two, in order')
  t.same((await inLog(keys[1])).map(([id]) => id), ids.slice(2, 3), 'b: its one')
  t.same((await inLog(keys[2])).map(([id]) => id), ids.slice(3), 'c: its three')
  t.same((await inLog(keys[2]))[0][1].slice(-2), ['c', 'tag-1'], 'each entry keeps the call\'s tag')
  t.ok(await pub.pttl(keys[1]) > 0, 'each log expires')
  for (let i = 0; i < 200 && got.size < 3; i++) await new Promise(resolve => setTimeout(resolve, 10))
  t.same(keys.map(k => got.get(k)?.length), [1, 1, 1], 'one message per log')
  t.same(readAll(got.get(keys[2])![0]).map(r => [r.position, r.body]), ids.slice(3).map((id, i) => [id, `data: c${i}\n\n`]), 'each log\'s message: its own records')
  await new Promise(resolve => setTimeout(resolve, 600))
  t.same(await pub.sseSettle(keys[1], deadline, 'tag-1', 700, 60_000, 100), ['written', ids[2]], 'settled per log, as a call of one log is')

  // b is not a stream now: that log alone is refused.
  await pub.del(keys[1])
  await pub.set(keys[1], 'not a stream')
  const partial = await pub.ssePublishLogs(3, ...keys, 100, 60_000, events('a', 1), '', '', events('b', 2), events('c', 1))
  t.equal(partial[0], 'partial')
  t.match(partial[2], /WRONGTYPE/, 'b: what Redis said')
  t.same([(partial[1] as string[]).length, (partial[3] as string[]).length], [1, 1], 'a and c: their positions')
  t.same((await inLog(keys[0])).length, 3, 'a published')
  t.same((await inLog(keys[2])).length, 4, 'c published')
  for (let i = 0; i < 200 && (got.get(keys[2])?.length ?? 0) < 2; i++) await new Promise(resolve => setTimeout(resolve, 10))
  t.same(keys.map(k => got.get(k)?.length), [2, 1, 2], 'no message for b')

  // A channel this user may not publish to: its log's appends are taken back, the others stay.
  await pub.del(keys[1])
  await pub.acl('SETUSER', 'narrow', 'on', '>pw', '~*', 'resetchannels', `&${keys[0]}`, `&${keys[2]}`, '+@all')
  const narrow = new Redis(server.url.replace('redis://', 'redis://narrow:pw@')) as Redis & Commands
  t.teardown(() => narrow.disconnect())
  narrow.defineCommand('ssePublishLogs', { lua: PUBLISH_SCRIPT })
  const denied = await narrow.ssePublishLogs(3, ...keys, 100, 60_000, events('a', 1), '', '', events('b', 2), events('c', 1))
  t.equal(denied[0], 'partial')
  t.match(denied[2], /can't publish to the channel/, 'b: refused its channel')
  t.equal(await pub.xlen(keys[1]), 0, 'b: nothing in its log (its appends taken back)')
  t.same([(await inLog(keys[0])).length, (await inLog(keys[2])).length], [4, 5], 'a and c published')
})

t.test('HISTORY_SCRIPT: the newest trimmed position is a gap on Redis, unlike MemoryHistory', async t => {
  const { pub } = await scriptsOnRedis(t)
  const key = logKey('t:', 'a')
  const ids: string[] = []
  for (let i = 0; i < 4; i++) ids.push(...await pub.ssePublish(key, 2, 0, pack([{ event: { topics: ['a'], body: `data: ${i}\n\n` }, uid: '', priors: '' }], '')))
  // ids[0], ids[1] trimmed; a reader at ids[1] missed nothing, yet it gets a reset (unneeded, safe).
  // Differs from MemoryHistory: MAXLEN trimming leaves XINFO's max-deleted-entry-id at 0-0 (Redis 7.0.15), so the script cannot know ids[1] was the last trimmed.
  const h = parseHistory('a', await pub.sseHistory(key, ids[1], 'read'))
  t.same(h.events.map(e => e.position), ids.slice(2), 'what remains follows, nothing lost')
  t.equal(h.gap, true, 'a reader at the last trimmed position: a gap')
})

t.test('PUBLISH_SCRIPT trims by age (ttl ms) and sets the key to expire', async t => {
  const { pub } = await scriptsOnRedis(t)
  const key = logKey('t:', 'old')
  const [first] = await pub.ssePublish(key, 100, 50, pack([{ event: { topics: ['old'], body: 'data: old\n\n' }, uid: '', priors: '' }], ''))
  await new Promise(resolve => setTimeout(resolve, 80))
  t.equal(await pub.exists(key), 0, 'expired with its ttl')
  t.same(parseHistory('old', await pub.sseHistory(key, first, 'read')).gap, true)
  // Margins a loaded machine keeps: a is past the 2 s age when c comes, the key is not.
  const [a] = await pub.ssePublish(key, 100, 2000, pack([{ event: { topics: ['old'], body: 'data: a\n\n' }, uid: '', priors: '' }], ''))
  await new Promise(resolve => setTimeout(resolve, 1100))
  await pub.ssePublish(key, 100, 2000, pack([{ event: { topics: ['old'], body: 'data: b\n\n' }, uid: '', priors: '' }], ''))
  await new Promise(resolve => setTimeout(resolve, 1100))
  const [c] = await pub.ssePublish(key, 100, 2000, pack([{ event: { topics: ['old'], body: 'data: c\n\n' }, uid: '', priors: '' }], ''))
  const h = parseHistory('old', await pub.sseHistory(key, '', 'read'))
  t.equal(h.gap, true, 'a was trimmed by age')
  t.notOk(h.events.some(e => e.position === a))
  t.equal(h.last, c)
  t.ok(await pub.pttl(key) > 0, 'the key expires')
})

/** Redis's clock in ms. */
async function redisNow (redis: Redis): Promise<number> {
  const [sec, usec] = await redis.time()
  return Number(sec) * 1000 + Math.floor(Number(usec) / 1000)
}

t.test('PUBLISH_SCRIPT with a deadline: a call that reaches Redis after it writes nothing; one before it keeps its tag with each entry', async t => {
  const { pub } = await scriptsOnRedis(t)
  const key = logKey('t:', 'late')
  const packed = pack([{ event: { topics: ['late'], body: 'data: 1\n\n' }, uid: '', priors: '' }, { event: { topics: ['late'], body: 'data: 2\n\n' }, uid: '', priors: '' }], '')
  await t.rejects(pub.ssePublish(key, 100, 0, packed, await redisNow(pub) - 1, 'x:1'), /^LATE /)
  t.equal(await pub.exists(key), 0, 'late: nothing written, not even the key')
  const ids = await pub.ssePublish(key, 100, 0, packed, await redisNow(pub) + 5000, 'x:2')
  t.equal(ids.length, 2)
  const entries = await pub.xrange(key, '-', '+')
  t.same(entries.map(([, f]) => f[f.indexOf('c') + 1]), ['x:2', 'x:2'], 'each entry keeps its call\'s tag')
  t.same(entries.map(([, f]) => f.slice(0, 10).filter((_, i) => i % 2 === 0)), [['u', 'p', 't', 'o', 'b'], ['u', 'p', 't', 'o', 'b']], 'the fields HISTORY_SCRIPT reads keep their places')
  t.same((await pub.ssePublish(key, 100, 0, packed)).length, 2, 'no deadline, no tag (the path proof): as before')
})

t.test('SETTLE_SCRIPT: waits out the deadline, then says for sure which calls wrote, or that it cannot tell', async t => {
  const { pub } = await scriptsOnRedis(t)
  const key = logKey('t:', 'settle')
  const one = (body: string): Buffer => pack([{ event: { topics: ['settle'], body }, uid: '', priors: '' }], '')
  const deadline = await redisNow(pub) + 300
  const [written] = await pub.ssePublish(key, 100, 0, one('data: a\n\n'), deadline, 'c:1')
  await pub.ssePublish(key, 100, 0, one('data: b\n\n'), deadline, 'c:2')
  const early = await pub.sseSettle(key, deadline, 'c:1', 10, 0, 100)
  t.equal(early[0], 'wait', 'before the deadline the call may still arrive')
  t.ok(Number(early[1]) > 0 && Number(early[1]) <= 301, `how long: ${early[1]} ms`)
  await new Promise(resolve => setTimeout(resolve, Number(early[1]) + 20))
  t.same(await pub.sseSettle(key, deadline, 'c:1', 400, 0, 100), ['written', written], 'the call that wrote: its position')
  t.same(await pub.sseSettle(key, deadline, 'c:9', 400, 0, 100), ['written'], 'a call that did not: nothing, for good')
  await t.rejects(pub.ssePublish(key, 100, 0, one('data: c\n\n'), deadline, 'c:9'), /^LATE /, 'and if it arrives now, it is refused')
  t.same(await pub.sseSettle(logKey('t:', 'none'), deadline, 'c:1', 400, 0, 100), ['written'], 'a log that does not exist: nothing written')
  t.same(await pub.sseSettle(key, deadline, 'c:1', 400, 20_000, 100), ['unknown'], 'a ttl too short to rule out that its entries aged out')

  // Trimmed by length: the log is full and its oldest entry is recent.
  const full = logKey('t:', 'full')
  const d2 = await redisNow(pub) + 100
  await pub.ssePublish(full, 3, 0, one('data: 0\n\n'), d2, 'f:0')
  for (let i = 1; i <= 3; i++) await pub.ssePublish(full, 3, 0, one(`data: ${i}\n\n`), d2, `f:${i}`)
  await new Promise(resolve => setTimeout(resolve, 150))
  t.same(await pub.sseSettle(full, d2, 'f:0', 200, 0, 3), ['unknown'], 'full, oldest entry recent: f:0 may have been trimmed')
  t.same(await pub.sseSettle(full, d2, 'f:0', 200, 0, 10), ['written'], 'not full: nothing was trimmed, f:0 is not there')
  // Taken back (XDEL, as a failed call undoes its appends).
  const [gone] = await pub.ssePublish(key, 100, 0, one('data: d\n\n'), await redisNow(pub) + 5000, 'c:3')
  await pub.xdel(key, gone)
  t.same(await pub.sseSettle(key, deadline, 'c:1', 400, 0, 100), ['unknown'], 'an entry deleted since: cannot tell')
})

async function usedMemory (redis: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1])
}

t.test('PUBLISH_SCRIPT fits a log that holds only its call\'s events: 1,000 one-event logs take under 1 KB each, and each log keeps its state', async t => {
  const { pub } = await scriptsOnRedis(t)
  const one = (log: string, body = 'event: created\ndata: {"id":42}\n\n'): Buffer => pack([{ event: { topics: [log], body }, uid: '', priors: '' }], '')
  await pub.ssePublish(logKey('t:', 'warm'), 1000, 86_400_000, one('warm'))
  const before = await usedMemory(pub)
  for (let i = 0; i < 1000; i++) await pub.ssePublish(logKey('t:', `u${i}`), 1000, 86_400_000, one(`u${i}`))
  const grown = await usedMemory(pub) - before
  t.ok(grown < 1_000_000, `1,000 one-event logs: ${grown} bytes of used_memory (Redis sizes a new stream's node for 4 KB)`)
  t.equal(await pub.dbsize(), 1001, 'one key per log, nothing else')
  t.ok(await pub.pttl(logKey('t:', 'u7')) > 86_000_000, 'the restored key keeps the ttl')

  // The restored key keeps what HISTORY_SCRIPT reads: a log trimmed to this call's event still says it lost some.
  const key = logKey('t:', 'kept')
  const ids: string[] = []
  for (let i = 0; i < 4; i++) ids.push(...await pub.ssePublish(key, 1, 0, one('kept', `data: ${i}\n\n`)))
  const info = await pub.xinfo('STREAM', key) as Array<string | number>
  const field = (name: string): unknown => info[info.indexOf(name) + 1]
  t.equal(field('length'), 1)
  t.equal(field('entries-added'), 4, 'entries-added survives the dump and restore')
  t.equal(field('last-generated-id'), ids[3])
  t.equal(await pub.pttl(key), -1, 'no ttl asked, none given')
  const h = parseHistory('kept', await pub.sseHistory(key, '', 'read'))
  t.equal(h.gap, true, 'nothing seen, three trimmed: still a gap')
  t.same(h.events.map(e => e.body.toString()), ['data: 3\n\n'])
  const [next] = await pub.ssePublish(key, 10, 0, one('kept', 'data: 4\n\n'))
  t.same(parseHistory('kept', await pub.sseHistory(key, ids[3], 'read')).events.map(e => e.position), [next], 'a restored log takes the next event as before')
})

/** A real Redis with HISTORY_SCRIPT, and entries written as PUBLISH_SCRIPT keeps them (fields u, p, t, o, b). */
async function historyOnRedis (t: Test): Promise<{ pub: Redis & Commands, add: (key: string, id: string, body: string) => Promise<string>, history: (key: string, after: string, mode: string) => Promise<ReturnType<typeof parseHistory>> }> {
  const server = await TestRedis.start()
  t.teardown(() => server.stop())
  const pub = new Redis(server.url) as Redis & Commands
  t.teardown(() => pub.disconnect())
  pub.defineCommand('sseHistory', { numberOfKeys: 1, lua: HISTORY_SCRIPT })
  return {
    pub,
    add: async (key, id, body) => (await pub.xadd(key, id, 'u', '', 'p', '', 't', 'x', 'o', '', 'b', body))!,
    history: async (key, after, mode) => parseHistory('x', await pub.sseHistory(key, after, mode))
  }
}

t.test('HISTORY_SCRIPT since: the entries after a time-position, never a gap', async t => {
  const { pub, add, history } = await historyOnRedis(t)
  const key = logKey('t:', 'x')
  const positions = (h: ReturnType<typeof parseHistory>): Array<string | null> => h.events.map(e => e.position)
  t.same(await history(key, '5000-0', 'since'), { last: null, gap: false, events: [] }, 'absent key: nothing since, no gap')
  for (const ms of [1000, 2000, 3000, 4000]) await add(key, `${ms}-0`, `data: ${ms}\n\n`)
  const mid = await history(key, '1500-0', 'since')
  t.same(positions(mid), ['2000-0', '3000-0', '4000-0'], 'a time never in the log: what came after it')
  t.equal(mid.gap, false)
  t.equal(mid.last, '4000-0')
  t.same(mid.events.map(e => e.body.toString()), ['data: 2000\n\n', 'data: 3000\n\n', 'data: 4000\n\n'])
  t.same(positions(await history(key, '2000-0', 'since')), ['3000-0', '4000-0'], 'a position in the log: after it, not it')
  t.same(await history(key, '4000-0', 'since'), { last: '4000-0', gap: false, events: [] }, 'at the newest: nothing')
  t.same(await history(key, '9000-0', 'since'), { last: '4000-0', gap: false, events: [] }, 'after the newest: nothing, no gap')
  await pub.xtrim(key, 'MAXLEN', 2)
  const trimmed = await history(key, '500-0', 'since')
  t.same(positions(trimmed), ['3000-0', '4000-0'])
  t.equal(trimmed.gap, false, 'some trimmed since the time: still no gap')
  t.equal((await history(key, '1000-0', 'since')).gap, false, 'a trimmed position: no gap')
  t.equal((await history(key, '1000-0', 'read')).gap, true, '(read mode calls that one a gap)')
})

t.test('HISTORY_SCRIPT catch-up: a log begun again after the position, nothing trimmed, is no gap', async t => {
  const { pub, add, history } = await historyOnRedis(t)
  const key = logKey('t:', 'x')
  t.same(await history(key, '5000-0', 'catch-up'), { last: null, gap: false, events: [] }, 'absent key: no gap')
  t.same(await history(key, '5000-0', 'read'), { last: null, gap: true, events: [] }, '(read mode: the log was lost, a gap)')
  // The old log (up to 5000-0) is gone; a new one was begun after it, while this instance was connected.
  for (const ms of [6000, 7000, 8000]) await add(key, `${ms}-0`, `data: ${ms}\n\n`)
  const h = await history(key, '5000-0', 'catch-up')
  t.equal(h.gap, false, 'begun again after the position, nothing trimmed: no gap')
  t.same(h.events.map(e => e.position), ['6000-0', '7000-0', '8000-0'], 'all of it')
  t.equal(h.last, '8000-0')
  const read = await history(key, '5000-0', 'read')
  t.equal(read.gap, true, '(read mode: a position not in the log is a gap)')
  t.same(read.events.map(e => e.position), ['6000-0', '7000-0', '8000-0'])
  t.same((await history(key, '7000-0', 'catch-up')).events.map(e => e.position), ['8000-0'], 'a position in the log: what follows it')
  t.equal((await history(key, '6500-0', 'catch-up')).gap, true, 'a position inside the new log but not in it: a gap')
  await pub.xtrim(key, 'MAXLEN', 2)
  const cut = await history(key, '5000-0', 'catch-up')
  t.equal(cut.gap, true, 'some of the new log trimmed: it may have had events the instance missed, a gap')
  t.same(cut.events.map(e => e.position), ['7000-0', '8000-0'])
})
