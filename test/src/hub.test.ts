// The hub on its own: groups of clients sharing a log set, their cursors as ids, one frame
// per group, the replay seam, slow clients.
import t from 'tap'
import { Client, Hub, type Delivery, type Sink } from '../../src/hub.js'

class FakeSink implements Sink {
  /** Each write() call's chunk, as given. */
  bufs: Buffer[] = []
  writableLength = 0
  /** The peer stopped reading: writes pile up in writableLength. */
  stalled = false
  ended = false
  destroyed = false
  write (chunk: Buffer): boolean {
    this.bufs.push(chunk)
    if (this.stalled) this.writableLength += chunk.length
    return !this.stalled
  }

  end (chunk?: Buffer): void {
    if (chunk !== undefined) this.bufs.push(chunk)
    this.ended = true
  }

  destroy (): void { this.destroyed = true }

  get writes (): string[] { return this.bufs.map(b => b.toString()) }
  /** One entry per SSE frame or comment. */
  get frames (): string[] { return this.writes.join('').split(/(?<=\n\n)/).filter(x => x !== '') }
  /** The id line of each frame ('' when it has none), then its data. */
  get seen (): string[] {
    return this.frames.map(f => {
      const id = /^id: (.*)$/m.exec(f)
      const data = /^data: (.*)$/m.exec(f)
      return `${id === null ? '-' : id[1]} ${data === null ? f.trim() : data[1]}`
    })
  }
}

/**
 * One Delivery per log of an event, as LocalBus and RedisBus produce (same uid when several):
 * one position for every log (LocalBus), or one per log (RedisBus, written in sorted topic
 * order); each copy's priors are its positions in the logs that sort before its own.
 */
function event (topics: string[] | null, position: string | null | Record<string, string>, data: string, uid: string | null = null): Delivery[] {
  const logs = topics ?? ['*']
  const body = Buffer.from(`data: ${data}\n\n`)
  const at = (log: string): string | null => position === null || typeof position === 'string' ? position : position[log]
  const sorted = [...logs].sort()
  const several = logs.length > 1
  return logs.map(log => ({
    log,
    position: at(log),
    uid: several ? (uid ?? `u-${data}`) : null,
    topics,
    // An event delivered on this instance only (no position) carries no priors, as RedisBus.
    priors: several && at(log) !== null ? sorted.slice(0, sorted.indexOf(log)).map(l => at(l)!).join(',') : null,
    body
  }))
}

interface Setup {
  hub: Hub
  watched: string[]
  unwatched: string[]
  add: (topics: string[], held?: boolean) => FakeSink
  clientOf: (s: FakeSink) => Client
  send: (topics: string[] | null, position: string | null | Record<string, string>, data: string) => void
}

/** A hub whose logs are ready as soon as they are watched (empty), as LocalBus does. */
function setup (bufferBytes = 1 << 20, autoReady = true): Setup {
  const watched: string[] = []
  const unwatched: string[] = []
  const clients = new Map<FakeSink, Client>()
  const pending: string[] = []
  const hub: Hub = new Hub({
    bufferBytes,
    watch: log => {
      watched.push(log)
      if (autoReady) pending.push(log)
    },
    unwatch: log => { unwatched.push(log) }
  })
  return {
    hub,
    watched,
    unwatched,
    add (topics, held = false) {
      const s = new FakeSink()
      const c = new Client(s, topics)
      clients.set(s, c)
      hub.add(c, held)
      for (const log of pending.splice(0)) hub.ready(log, null)
      return s
    },
    clientOf: s => clients.get(s)!,
    send (topics, position, data) {
      for (const d of event(topics, position, data)) hub.deliver(d)
    }
  }
}

t.test('topic events reach that topic\'s clients; broadcasts reach everyone', async t => {
  const { hub, add, send } = setup()
  const a = add(['a'])
  const b = add(['b'])
  const none = add([])
  send(['a'], '1-0', 'to a')
  send(null, '2-0', 'to all')
  send(['zzz'], '3-0', 'to nobody')
  t.same(a.bufs, [], 'nothing is written before the end of the turn')
  hub.flush()
  t.same(a.seen, ['1-0 to a', '1-0.2-0 to all'])
  t.same(b.seen, ['.2-0 to all'], 'b has seen nothing of its topic: its position there is empty')
  t.same(none.seen, ['2-0 to all'], 'a stream of no topic: its id is the broadcasts\' position')
  t.equal(hub.delivered, 4)
})

t.test('ids are the group\'s cursor: a topic position alone until a broadcast, then pos.bpos', async t => {
  const { hub, add, send } = setup()
  const a = add(['a'])
  const ba = add(['b', 'a'])
  send(['a'], '1-0', 'x')
  hub.flush()
  send(['a'], '2-0', 'y')
  hub.flush()
  send(null, '3-0', 'z')
  hub.flush()
  send(['b'], '4-0', 'w')
  send(['a'], '5-0', 'v')
  hub.flush()
  t.same(a.seen, ['1-0 x', '2-0 y', '2-0.3-0 z', '5-0.3-0 v'])
  t.same(ba.seen, ['1-0 x', '2-0 y', '2-0..3-0 z', '2-0.4-0.3-0 w', '5-0.4-0.3-0 v'], 'topics sorted, then broadcasts')
  t.equal(hub.head('a'), '5-0')
  t.equal(hub.head('b'), '4-0')
  t.equal(hub.head('*'), '3-0')
})

t.test('an event of several topics reaches a client of several of them once, and clients of one of them once', async t => {
  const { hub, add, send } = setup()
  const ab = add(['a', 'b'])
  const abc = add(['c', 'b', 'a'])
  const a = add(['a'])
  const b = add(['b'])
  const c = add(['c'])
  send(['a', 'b'], '1-0', 'ab') // as LocalBus: one position in both logs
  send(['b', 'a'], { a: '2-0', b: '2-1' }, 'ba') // as RedisBus: each log its own position
  send(['b', 'c'], '3-0', 'bc')
  hub.flush()
  const data = (s: FakeSink): string[] => s.seen.map(x => x.split(' ')[1])
  t.same(data(ab), ['ab', 'ba', 'bc'])
  t.same(data(abc), ['ab', 'ba', 'bc'])
  t.same(data(a), ['ab', 'ba'])
  t.same(data(b), ['ab', 'ba', 'bc'])
  t.same(data(c), ['bc'])
  t.same(b.seen.map(x => x.split(' ')[0]), ['1-0', '2-1', '3-0'], 'b\'s id is its own log\'s position')
  t.same(a.seen.map(x => x.split(' ')[0]), ['1-0', '2-0'])
})

t.test('frames are shared within a group: one Buffer for all its clients', async t => {
  const { hub, add, send } = setup()
  const a1 = add(['a'])
  const a2 = add(['a'])
  const a3 = add(['a'])
  const ab = add(['a', 'b'])
  send(['a'], '1-0', 'one')
  hub.flush()
  t.equal(a1.bufs.length, 1)
  t.equal(a1.bufs[0], a2.bufs[0], 'the same Buffer, not a copy')
  t.equal(a1.bufs[0], a3.bufs[0])
  t.not(a1.bufs[0], ab.bufs[0], 'another group has its own frame')
  send(['a'], '2-0', 'two')
  send(['a'], '3-0', 'three')
  hub.flush()
  t.equal(a1.bufs.length, 2, 'the frames of one turn in one write')
  t.equal(a1.bufs[1], a2.bufs[1], 'and that chunk is joined once for the group')
  t.equal(a1.bufs[1], a3.bufs[1])
  t.equal(a1.writes[1], 'id: 2-0\ndata: two\n\nid: 3-0\ndata: three\n\n')
  t.equal(ab.writes[1], 'id: 2-0\ndata: two\n\nid: 3-0\ndata: three\n\n')
})

t.test('clients sharing a turn get their own frames, even with the same count and ends', async t => {
  const { hub, add, send } = setup()
  const ab = add(['a', 'b'])
  const ac = add(['a', 'c'])
  const a1 = add(['a'])
  const a2 = add(['a'])
  send(['a'], '1-0', '1')
  send(['b'], '2-0', '2')
  send(['c'], '3-0', '3')
  send(['a'], '4-0', '4')
  hub.flush()
  t.same(ab.seen, ['1-0 1', '1-0.2-0 2', '4-0.2-0 4'])
  t.same(ac.seen, ['1-0 1', '1-0.3-0 3', '4-0.3-0 4'])
  t.same(a1.seen, ['1-0 1', '4-0 4'])
  t.same(a2.seen, ['1-0 1', '4-0 4'])
})

t.test('watch and unwatch once per log, as groups appear and disappear', async t => {
  const { hub, add, clientOf, watched, unwatched, send } = setup()
  const a1 = add(['a'])
  const a2 = add(['a'])
  t.same(watched, ['a', '*'])
  const ab = add(['b', 'a'])
  t.same(watched, ['a', '*', 'b'], 'only the new log')
  t.same(hub.logs().sort(), ['*', 'a', 'b'])
  hub.remove(clientOf(ab))
  hub.remove(clientOf(ab))
  t.same(unwatched, ['b'])
  hub.remove(clientOf(a1))
  t.same(unwatched, ['b'], 'a2 still reads a')
  hub.remove(clientOf(a2))
  t.same(unwatched.sort(), ['*', 'a', 'b'])
  t.same(hub.logs(), [])
  t.equal(hub.size, 0)
  send(['a'], '1-0', 'late')
  hub.flush()
  t.same([...a1.bufs, ...a2.bufs, ...ab.bufs], [], 'removed clients get nothing')
  const again = add(['a'])
  t.same(watched, ['a', '*', 'b', 'a', '*'], 'a log read again is watched again')
  t.equal(hub.head('a'), null, 'its old head was forgotten')
  send(['a'], '2-0', 'new')
  hub.flush()
  t.same(again.seen, ['2-0 new'])
})

t.test('clients added before their logs are ready wait, then go live at the head', async t => {
  const { hub, add } = setup(1 << 20, false)
  const a = add(['a'])
  const before = add(['a'])
  for (const d of event(['a'], '1-0', 'before the head')) hub.deliver(d)
  for (const d of event(['a'], '2-0', 'at the head')) hub.deliver(d)
  hub.flush()
  t.same(a.bufs, [], 'waiting: nothing yet')
  hub.ready('a', '2-0')
  hub.flush()
  t.same(a.bufs, [], 'the broadcasts are not ready yet')
  for (const d of event(['a'], '3-0', 'after the head')) hub.deliver(d)
  hub.ready('*', null)
  for (const d of event(['a'], '4-0', 'live')) hub.deliver(d)
  hub.flush()
  t.same(a.seen, ['3-0 after the head', '4-0 live'], 'nothing before the head, nothing twice')
  t.same(before.seen, a.seen)
  const late = add(['a'])
  for (const d of event(['a'], '5-0', 'shared')) hub.deliver(d)
  hub.flush()
  t.same(late.seen, ['5-0 shared'], 'a client of ready logs is live at once')
  t.equal(late.bufs[0], a.bufs[a.bufs.length - 1], 'and shares its group\'s frame')
})

t.test('a client waiting for an empty log gets its first event', async t => {
  const { hub, add } = setup(1 << 20, false)
  const b = add(['b'])
  hub.ready('*', null)
  hub.ready('b', null)
  hub.flush()
  t.same(b.seen, [])
  for (const d of event(['b'], '8-0', 'first')) hub.deliver(d)
  hub.flush()
  t.same(b.seen, ['8-0 first'])
})

t.test('replay seam: held deliveries newer than the replayed cursor follow, older are skipped', async t => {
  const { hub, add, clientOf, send } = setup()
  const live = add(['a'])
  const s = add(['a'], true)
  const c = clientOf(s)
  send(['a'], '5-0', 'five') // live while the replay runs; history has it too
  hub.flush()
  t.same(s.bufs, [], 'held during the replay')
  for (const p of ['4-0', '5-0', '6-0']) hub.replay(c, event(['a'], p, p)[0])
  send(['a'], '6-0', 'six') // history had it before this instance did
  send(['a'], '7-0', 'seven')
  hub.goLive(c, c.cursor!)
  send(['a'], '8-0', 'eight')
  send(['a'], null, 'local') // no position (Redis outage): always sent, no id
  hub.flush()
  t.same(s.seen, ['4-0 4-0', '5-0 5-0', '6-0 6-0', '7-0 seven', '8-0 eight', '- local'])
  t.same(live.seen, ['5-0 five', '6-0 six', '7-0 seven', '8-0 eight', '- local'])
  send(['a'], '9-0', 'nine')
  hub.flush()
  t.equal(s.bufs[s.bufs.length - 1], live.bufs[live.bufs.length - 1], 'caught up: it shares the group\'s frames again')
})

t.test('replay seam: a multi-topic event replayed through another log is not repeated by its entry copy', async t => {
  const { hub, add, clientOf } = setup()
  const s = add(['a', 'b'], true)
  const c = clientOf(s)
  const [viaA, viaB] = event(['a', 'b'], { a: '9-0', b: '3-0' }, 'ab', 'U1')
  // History of b had it; a's history did not yet: its copy through a, the entry, is yet to come.
  hub.replay(c, viaB, true)
  hub.goLive(c, c.cursor!)
  hub.deliver(viaA)
  hub.deliver(viaB)
  const [viaA2, viaB2] = event(['a', 'b'], { a: '10-0', b: '4-0' }, 'ab2', 'U2')
  hub.deliver(viaA2)
  hub.deliver(viaB2)
  hub.flush()
  // Replayed through b, its id has b's position only; live, an event of a and b goes out
  // through a (the group's entry), before its copy in b has arrived.
  t.same(s.seen, ['.3-0 ab', '10-0.3-0 ab2'], 'the uid was forgotten: a later event is not swallowed')
  const s2 = add(['a', 'b'], true)
  const c2 = clientOf(s2)
  const [viaA3, viaB3] = event(['a', 'b'], { a: '11-0', b: '5-0' }, 'ab3', 'U3')
  hub.replay(c2, viaB3, true)
  hub.goLive(c2, ['10-0', '5-0', null])
  hub.flush()
  hub.deliver(viaA3) // c2 is live in its group now: the group path skips it too
  hub.deliver(viaB3)
  hub.flush()
  t.same(s2.seen.map(x => x.split(' ')[1]), ['ab3'], 'once, on the group path too')
  t.same(s.seen.map(x => x.split(' ')[1]), ['ab', 'ab2', 'ab3'])
})

t.test('a client ahead of this instance gets its own frames until the heads catch up', async t => {
  const { hub, add, clientOf, send } = setup()
  const behind = add(['a'])
  send(['a'], '1-0', 'one')
  hub.flush()
  const ahead = add(['a'], true)
  const c = clientOf(ahead)
  hub.goLive(c, ['3-0', null]) // it came from an instance that had 3-0 already
  send(['a'], '2-0', 'two')
  hub.flush()
  t.same(ahead.bufs, [], 'it had 2-0')
  send(null, '2-5', 'all')
  hub.flush()
  t.same(ahead.seen, ['3-0.2-5 all'], 'its own cursor, not the group\'s 2-0')
  t.not(ahead.bufs[0], behind.bufs[behind.bufs.length - 1])
  send(['a'], '3-0', 'three')
  hub.flush()
  t.equal(ahead.seen.length, 1, 'it had 3-0 too')
  send(['a'], '4-0', 'four')
  hub.flush()
  t.same(ahead.seen, ['3-0.2-5 all', '4-0.2-5 four'])
  t.same(behind.seen, ['1-0 one', '2-0 two', '2-0.2-5 all', '3-0.2-5 three', '4-0.2-5 four'])
  t.equal(ahead.bufs[1], behind.bufs[4], 'caught up: the group\'s frame')
})

t.test('deliveries of one turn are written in one write at its end, without being asked', async t => {
  const { hub, add, send } = setup()
  const a = add(['a'])
  send(['a'], '1-0', 'x')
  send(['a'], '2-0', 'y')
  t.same(a.bufs, [])
  await new Promise(resolve => setImmediate(resolve))
  t.same(a.writes, ['id: 1-0\ndata: x\n\nid: 2-0\ndata: y\n\n'])
  send(['a'], '3-0', 'z')
  await new Promise(resolve => setImmediate(resolve))
  t.same(a.writes, ['id: 1-0\ndata: x\n\nid: 2-0\ndata: y\n\n', 'id: 3-0\ndata: z\n\n'], 'next turn, next write')
  t.equal(hub.delivered, 3)
})

t.test('a client that stops reading is disconnected past its buffer; the others carry on', async t => {
  const { hub, add, send } = setup(1000)
  const slow = add(['a'])
  const fast = add(['a'])
  const other = add(['b'])
  slow.stalled = true
  for (let i = 0; i < 100; i++) {
    send(['a'], `${i + 1}-0`, 'x'.repeat(50))
    hub.flush() // one event per turn
  }
  t.ok(slow.destroyed, 'slow client destroyed')
  t.ok(slow.writableLength <= 1000 + 80, `its buffer stayed bounded (${slow.writableLength} bytes)`)
  t.equal(fast.frames.length, 100, 'the fast client got everything')
  t.equal(hub.slowDisconnected, 1)
  t.equal(hub.dropped, 1, 'the frame whose write overflowed the buffer counts as dropped')
  t.equal(hub.size, 2)
  const before = slow.bufs.length
  send(['a'], '200-0', 'after')
  send(['b'], '201-0', 'b')
  hub.flush()
  t.equal(slow.bufs.length, before, 'nothing more is written to it')
  t.same(other.seen, ['201-0 b'])
})

t.test('a held client whose held deliveries exceed the buffer is disconnected', async t => {
  const { hub, add, send } = setup(1000)
  const held = add(['a'], true)
  const live = add(['a'])
  for (let i = 0; i < 30; i++) send(['a'], `${i + 1}-0`, 'x'.repeat(50))
  hub.flush()
  t.ok(held.destroyed)
  t.equal(hub.slowDisconnected, 1)
  t.equal(live.frames.length, 30)
})

t.test('heartbeats go only to live streams idle for a whole interval', async t => {
  const { hub, add, send } = setup()
  const busy = add(['a'])
  const idle = add(['b'])
  const held = add(['a'], true)
  const hb = Buffer.from(': heartbeat\n\n')
  hub.heartbeat(hb) // first tick: all idle since they were added
  send(['a'], '1-0', 'x')
  hub.flush()
  hub.heartbeat(hb)
  t.same(busy.frames, [': heartbeat\n\n', 'id: 1-0\ndata: x\n\n'])
  t.same(idle.frames, [': heartbeat\n\n', ': heartbeat\n\n'])
  t.same(held.bufs, [], 'a held (replaying) stream gets none')
  t.equal(hub.delivered, 1, 'heartbeats are not counted as deliveries')
  hub.heartbeat(hb)
  t.same(busy.frames, [': heartbeat\n\n', 'id: 1-0\ndata: x\n\n', ': heartbeat\n\n'], 'idle again a tick later')
})

t.test('closeAll writes what is queued, then ends every stream', async t => {
  const { hub, add, send } = setup()
  const socks = [add(['a']), add([]), add(['b'])]
  send(null, '1-0', 'last')
  hub.closeAll()
  t.ok(socks.every(s => s.ended))
  t.ok(socks.every(s => s.seen.length === 1 && s.seen[0].endsWith('last')), 'the last event was not lost')
  t.equal(hub.size, 0)
  t.same(hub.logs(), [])
})

t.test('closeLog ends only the streams that read that log, after what was queued', async t => {
  const { hub, add, send } = setup()
  const a = add(['a'])
  const ab = add(['a', 'b'])
  const b = add(['b'])
  const c = add(['c'])
  send(['b'], '1-0', 'to b')
  send(['c'], '2-0', 'to c')
  hub.closeLog('b')
  t.ok(ab.ended)
  t.ok(b.ended)
  t.notOk(a.ended)
  t.notOk(c.ended)
  t.same(b.seen, ['1-0 to b'], 'what was queued went out first')
  t.same(c.seen, ['2-0 to c'])
  t.equal(hub.size, 2)
  t.notOk(hub.logs().includes('b'))
  send(['a'], '3-0', 'a')
  send(['b'], '4-0', 'b')
  hub.flush()
  t.same(a.seen, ['3-0 a'], 'the others carry on')
  t.same(b.seen, ['1-0 to b'])
  hub.closeLog('nobody-reads-this')
  t.equal(hub.size, 2)
})

t.test('advance moves the head without writing anything', async t => {
  const { hub, add, send } = setup()
  const a = add(['a'])
  send(['a'], null, 'during the outage')
  hub.flush()
  hub.advance('a', '5-0') // the same event, published once Redis came back
  hub.advance('zzz', '6-0')
  hub.flush()
  t.same(a.seen, ['- during the outage'], 'advance writes nothing')
  t.equal(hub.head('a'), '5-0')
  t.equal(hub.head('zzz'), null, 'a log without readers has no head')
  send(null, '7-0', 'all')
  hub.flush()
  t.same(a.seen, ['- during the outage', '5-0.7-0 all'], 'the next id carries the advanced head')
})

t.test('a local-only delivery (no position) is written without an id and does not move ids', async t => {
  const { hub, add, send } = setup()
  const a = add(['a'])
  const all = add([])
  send(['a'], '1-0', 'one')
  send(['a'], null, 'local')
  send(null, null, 'local to all')
  send(null, '2-0', 'two')
  hub.flush()
  t.same(a.seen, ['1-0 one', '- local', '- local to all', '1-0.2-0 two'])
  t.same(all.seen, ['- local to all', '2-0 two'])
  t.equal(a.frames[1], 'data: local\n\n', 'no id line at all')
  t.equal(hub.head('a'), '1-0')
})

/** A socket whose write takes `us` microseconds of CPU, as a real write(2) does. */
class SlowSink extends FakeSink {
  constructor (private readonly us: number) { super() }
  override write (chunk: Buffer): boolean {
    const until = performance.now() + this.us / 1000
    while (performance.now() < until);
    return super.write(chunk)
  }
}

const turn = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))

t.test('a long flush goes on over several turns: an event that arrives meanwhile joins the unwritten clients\' write', async t => {
  const passes: Array<[number, number]> = []
  const hub = new Hub({ bufferBytes: 1 << 20, watch: () => {}, unwatch: () => {}, flushed: started => passes.push([started, performance.now()]) })
  // 1,000 clients x 20 us = 20 ms of writes: several slices.
  const sinks = Array.from({ length: 1000 }, () => new SlowSink(20))
  for (const sink of sinks) hub.add(new Client(sink, ['a']))
  hub.ready('a', null)
  hub.ready('*', null)
  for (const d of event(['a'], '1-0', 'one')) hub.deliver(d)
  await turn() // the first slice: some clients written, the rest still queued
  const early = sinks.filter(s => s.bufs.length === 1).length
  t.ok(early > 0 && early < sinks.length, `the first turn wrote some clients, not all (${early})`)
  for (const d of event(['a'], '2-0', 'two')) hub.deliver(d)
  for (let i = 0; i < 100 && sinks.some(s => s.seen.length < 2); i++) await turn()
  for (const sink of sinks) t.same(sink.seen, ['1-0 one', '2-0 two'], 'every client: both, once, in order')
  const together = sinks.filter(s => s.bufs.length === 1).length
  t.equal(together, sinks.length - early, 'the clients not yet written got both events in one write')
  t.equal(sinks.filter(s => s.bufs.length === 2).length, early, 'those written first got the second in a write of its own')
  t.equal(hub.delivered, 2000)
  t.equal(passes.length, 2, 'flushed: once for the pass over all 1,000, once for the clients that got event two after theirs')
  t.ok(passes[0][1] - passes[0][0] >= 1000 * 0.02, 'the first pass lasted its 1,000 writes, over several turns')
})

t.test('paced: no wait with nothing queued; under a pass, settled once a quarter of the queued clients are written', async t => {
  const hub = new Hub({ bufferBytes: 1 << 20, watch: () => {}, unwatch: () => {} })
  // 2,000 clients x 20 us = 40 ms of writes: a pass over ten slices or more.
  const sinks = Array.from({ length: 2000 }, () => new SlowSink(20))
  for (const sink of sinks) hub.add(new Client(sink, ['a']))
  hub.ready('a', null)
  hub.ready('*', null)
  t.equal(hub.paced(), null, 'no pass under way: an answer need not wait')
  for (const d of event(['a'], '1-0', 'one')) hub.deliver(d)
  const written = (): number => sinks.filter(s => s.bufs.length > 0).length
  const at = { settle: -1 }
  const pace = hub.paced()!.then(() => { at.settle = written() })
  for (let i = 0; i < 200 && at.settle === -1; i++) await turn()
  await pace
  t.ok(at.settle >= 500, `settled once 500 of the 2,000 were written, not before (${at.settle})`)
  t.ok(at.settle < 2000, `and before the pass ended (${at.settle})`)
  for (let i = 0; i < 200 && written() < 2000; i++) await turn()
  t.equal(hub.paced(), null, 'the pass over: no wait')

  // A flush (a stream's end, shutdown) writes everyone at once: the waits settle with it.
  for (const d of event(['a'], '2-0', 'two')) hub.deliver(d)
  let settled = false
  const flushed = hub.paced()!.then(() => { settled = true })
  hub.flush()
  await Promise.resolve()
  t.ok(settled, 'a flush settles the waits')
  await flushed
  t.ok(sinks.every(s => s.seen.length === 2), 'every client got both events')
})

t.test('a stream closed while frames wait for their write gets them before its end', async t => {
  const hub = new Hub({ bufferBytes: 1 << 20, watch: () => {}, unwatch: () => {} })
  const sink = new FakeSink()
  const client = new Client(sink, ['a'])
  hub.add(client)
  hub.ready('a', null)
  hub.ready('*', null)
  for (const d of event(['a'], '1-0', 'one')) hub.deliver(d)
  hub.close(client, Buffer.from(': bye\n\n'))
  t.same(sink.writes, ['id: 1-0\ndata: one\n\n', ': bye\n\n'])
  t.ok(sink.ended)
  await turn()
  t.equal(sink.bufs.length, 2, 'nothing written after the end')
})

t.test('flushed: once per flush that wrote, with the oldest acceptedAt of what it wrote to live clients', async t => {
  const calls: Array<[number, number | null]> = []
  const hub: Hub = new Hub({ bufferBytes: 1 << 20, watch: log => queueMicrotask(() => hub.ready(log, null)), unwatch: () => {}, flushed: (started, oldest) => calls.push([started, oldest]) })
  const sinks = [new FakeSink(), new FakeSink()]
  for (const s of sinks) hub.add(new Client(s, ['a']))
  const held = new FakeSink()
  hub.add(new Client(held, ['b']), true)
  await new Promise(resolve => queueMicrotask(() => resolve(null)))
  const at = (d: Delivery[], acceptedAt: number): Delivery[] => d.map(x => ({ ...x, acceptedAt }))
  for (const d of at(event(['b'], '1-0', 'held'), 1)) hub.deliver(d) // only a held client: not written
  for (const d of at(event(['a'], '2-0', 'a2'), 5)) hub.deliver(d)
  for (const d of at(event(['a'], '3-0', 'a3'), 3)) hub.deliver(d)
  for (const d of at(event(['c'], '4-0', 'nobody'), 2)) hub.deliver(d) // no reader
  const before = performance.now()
  hub.flush()
  t.equal(calls.length, 1, 'one call for two events to two clients')
  t.ok(calls[0][0] >= before && calls[0][0] <= performance.now(), 'when the flush began')
  t.equal(calls[0][1], 3, 'the oldest of what was written')
  hub.flush()
  t.equal(calls.length, 1, 'nothing written, no call')
  for (const d of event(['a'], '5-0', 'untimed')) hub.deliver(d)
  hub.flush()
  t.same(calls[1][1], null, 'no acceptedAt: null')
  t.same(sinks[0].seen.slice(-3), ['2-0 a2', '3-0 a3', '5-0 untimed'])
})
