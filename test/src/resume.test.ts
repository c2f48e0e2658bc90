// A stream that comes back with a Last-Event-ID: what it is sent, from a fake bus's
// per-log history, through a real hub, at the pace of a socket that fills up.
import { EventEmitter } from 'node:events'
import t from 'tap'
import type { Bus, LogHistory, Outgoing, PublishResult } from '../../src/bus/bus.js'
import { decodeCursor } from '../../src/cursor.js'
import { compareIds } from '../../src/event-id.js'
import { Client, Hub, type Delivery } from '../../src/hub.js'
import { mergeHistories, resume, type DrainableSink, type ResumeCounts } from '../../src/resume.js'

class FakeSocket extends EventEmitter implements DrainableSink {
  bufs: Buffer[] = []
  writableLength = 0
  /** write() says "full" every `fullEvery` writes, and 'drain' comes a turn later. */
  fullEvery = 0
  drains = 0
  ended = false
  destroyed = false
  write (chunk: Buffer): boolean {
    this.bufs.push(chunk)
    if (this.fullEvery === 0 || this.bufs.length % this.fullEvery !== 0) return true
    this.writableLength = chunk.length
    setImmediate(() => {
      this.writableLength = 0
      this.drains++
      this.emit('drain')
    })
    return false
  }

  end (): void { this.ended = true }
  destroy (): void {
    this.destroyed = true
    this.emit('close')
  }

  get frames (): string[] { return this.bufs.map(b => b.toString()).join('').split(/(?<=\n\n)/).filter(x => x !== '') }
  /** `<id or -> <data>` per frame. */
  get seen (): string[] {
    return this.frames.map(f => {
      const id = /^id: (.*)$/m.exec(f)
      const data = /^data: (.*)$/m.exec(f)
      return `${id === null ? '-' : id[1]} ${data === null ? '?' : data[1]}`
    })
  }

  /** The Last-Event-ID a browser would send after this: the last id written. */
  get lastId (): string {
    let last = ''
    for (const f of this.frames) {
      const id = /^id: (.*)$/m.exec(f)
      if (id !== null) last = id[1]
    }
    return last
  }
}

/** History per log, kept by hand; `history` can be made to wait or to fail. */
class FakeBus implements Bus {
  readonly mode = 'single' as const
  readonly replayed = 0
  readonly queued = 0
  readonly trouble = null
  readonly historyReads = 0
  readonly logs = new Map<string, Delivery[]>()
  /** Logs whose history says some of it was trimmed before what it holds. */
  readonly trimmed = new Set<string>()
  /** A log's answer, as is. */
  readonly override = new Map<string, LogHistory>()
  fail: Error | null = null
  /** Resolved before history answers, when set. */
  gate: Promise<void> | null = null
  asked: Array<[string, string | null | undefined]> = []

  add (...ds: Delivery[]): void {
    for (const d of ds) {
      const list = this.logs.get(d.log) ?? []
      list.push(d)
      this.logs.set(d.log, list)
    }
  }

  async publish (_events: Outgoing[]): Promise<PublishResult> { throw new Error('not used') }
  async history (log: string, after: string | null | undefined): Promise<LogHistory> {
    this.asked.push([log, after])
    if (this.gate !== null) await this.gate
    if (this.fail !== null) throw this.fail
    const fixed = this.override.get(log)
    if (fixed !== undefined) return fixed
    const list = this.logs.get(log) ?? []
    const last = list.length === 0 ? null : list[list.length - 1].position
    if (after === undefined) return { events: [], gap: true, last }
    if (after === null) return { events: list.slice(), gap: this.trimmed.has(log), last }
    const at = list.findIndex(d => d.position === after)
    if (at !== -1) return { events: list.slice(at + 1), gap: false, last }
    return { events: list.filter(d => compareIds(d.position!, after) > 0), gap: true, last }
  }

  watch (): void {}
  unwatch (): void {}
  async close (): Promise<void> {}
}

/**
 * The copies of an event as the buses produce them: one position for every log (LocalBus),
 * or one per log (RedisBus writes them in sorted topic order, so a later log's position is
 * greater); each copy's priors are its positions in the logs that sort before its own.
 */
function event (topics: string[] | null, position: string | Record<string, string>, data: string): Delivery[] {
  const logs = topics ?? ['*']
  const body = Buffer.from(`data: ${data}\n\n`)
  const at = (log: string): string => typeof position === 'string' ? position : position[log]
  const sorted = [...logs].sort()
  const several = logs.length > 1
  return logs.map(log => ({
    log,
    position: at(log),
    uid: several ? `u-${data}` : null,
    topics,
    priors: several ? sorted.slice(0, sorted.indexOf(log)).map(at).join(',') : null,
    body
  }))
}

function setup (): { hub: Hub, bus: FakeBus, counts: ResumeCounts, connect: (topics: string[], lastEventId: string) => Promise<{ sock: FakeSocket, client: Client, err: Error | null }> } {
  const bus = new FakeBus()
  const hub: Hub = new Hub({ bufferBytes: 1 << 20, watch: log => queueMicrotask(() => hub.ready(log, undefined)), unwatch: () => {} })
  const counts: ResumeCounts = {
    outcomes: { replayed: 0, reset: 0, 'history-unavailable': 0, abandoned: 0 },
    resets: { history: 0, 'history-unavailable': 0 }
  }
  return {
    hub,
    bus,
    counts,
    async connect (topics, lastEventId) {
      const sock = new FakeSocket()
      const client = new Client(sock, topics)
      const positions = decodeCursor(lastEventId, new Set(topics).size + 1)
      if (positions === null) throw new Error(`bad id ${lastEventId}`)
      const err = await resume(hub, bus, client, sock, positions, counts)
      hub.flush()
      return { sock, client, err }
    }
  }
}

t.test('replays across logs merged by position; an event of several topics once', async t => {
  const { bus, connect } = setup()
  bus.add(...event(['a'], '1-0', 'a1'))
  bus.add(...event(['b'], '2-0', 'b1'))
  bus.add(...event(null, '3-0', 'all'))
  bus.add(...event(['a', 'b'], '4-0', 'ab'))
  bus.add(...event(['b'], '5-0', 'b2'))
  bus.add(...event(['a'], '6-0', 'a2'))
  const { sock, err } = await connect(['b', 'a'], '') // nothing seen yet: all of it
  t.equal(err, null)
  t.same(sock.seen.map(x => x.split(' ')[1]), ['a1', 'b1', 'all', 'ab', 'b2', 'a2'])
  t.same(sock.seen.map(x => x.split(' ')[0]).slice(0, 3), ['1-0', '1-0.2-0', '1-0.2-0.3-0'], 'ids are the cursor, log by log')
  t.equal(sock.seen[5].split(' ')[0], '6-0.5-0.3-0')
})

t.test('resuming from a position replays only what came after it in each log', async t => {
  const { bus, connect } = setup()
  bus.add(...event(['a'], '1-0', 'a1'))
  bus.add(...event(['b'], '2-0', 'b1'))
  bus.add(...event(['a'], '3-0', 'a2'))
  bus.add(...event(null, '4-0', 'all'))
  bus.add(...event(['b'], '5-0', 'b2'))
  const { sock } = await connect(['a', 'b'], '1-0.2-0')
  t.same(sock.seen, ['3-0.2-0 a2', '3-0.2-0.4-0 all', '3-0.5-0.4-0 b2'])
  t.same(bus.asked.sort(), [['*', null], ['a', '1-0'], ['b', '2-0']], 'one history read per log; "" is nothing seen')
})

t.test('resuming from the last id written after a multi-topic event replays nothing again', async t => {
  // The copies of an event of a and b, at one position (LocalBus) or two (RedisBus).
  for (const [name, position] of [['one position', '4-0'], ['a position per log', { a: '4-0', b: '4-1' }]] as const) {
    const { bus, connect } = setup()
    bus.add(...event(['a'], '1-0', 'a1'))
    bus.add(...event(['a', 'b'], position, 'ab'))
    const first = await connect(['a', 'b'], '')
    t.same(first.sock.seen.map(x => x.split(' ')[1]), ['a1', 'ab'], name)
    const again = await connect(['a', 'b'], first.sock.lastId)
    t.same(again.sock.seen, [], `${name}: back from ${JSON.stringify(first.sock.lastId)}, it had everything`)
  }
})

t.test('a client that got a multi-topic event live and resumes from its id gets nothing again', async t => {
  const { hub, bus, connect } = setup()
  const { sock } = await connect(['a', 'b'], '')
  const copies = event(['a', 'b'], { a: '7-0', b: '7-1' }, 'ab')
  bus.add(...copies)
  for (const d of copies) hub.deliver(d) // as RedisBus delivers them: a's copy, then b's
  hub.flush()
  t.same(sock.seen.map(x => x.split(' ')[1]), ['ab'])
  hub.remove(hub.clients.values().next().value!)
  const again = await connect(['a', 'b'], sock.lastId)
  t.same(again.sock.seen, [], `back from ${JSON.stringify(sock.lastId)}, it had everything`)
})

t.test('a gap writes a reset naming its topic, then what remains', async t => {
  const { bus, connect } = setup()
  bus.add(...event(['a'], '5-0', 'a5'))
  bus.add(...event(['a'], '6-0', 'a6'))
  bus.add(...event(['b'], '7-0', 'b7'))
  bus.add(...event(null, '8-0', 'all'))
  const { sock } = await connect(['a', 'b'], '1-0.7-0.8-0') // 1-0 was trimmed from a
  t.same(sock.frames, [
    'event: reset\ndata: {"reason":"history","topic":"a"}\n\n',
    'id: 5-0.7-0.8-0\ndata: a5\n\n',
    'id: 6-0.7-0.8-0\ndata: a6\n\n'
  ])
})

t.test('a gap with nothing after it: the reset\'s id moves the cursor past it', async t => {
  const { hub, bus, connect } = setup()
  // All of a expired: nothing left, but its newest position is known.
  bus.override.set('a', { events: [], gap: true, last: '5-0' })
  bus.trimmed.add('*')
  bus.add(...event(null, '6-0', 'all'))
  const { sock } = await connect(['a'], '1-0')
  t.same(sock.frames, [
    'id: 5-0\nevent: reset\ndata: {"reason":"history","topic":"a"}\n\n',
    'event: reset\ndata: {"reason":"history"}\n\n',
    'id: 5-0.6-0\ndata: all\n\n'
  ], 'a: reset to its newest; the broadcasts: a reset naming no topic, then what remains')
  for (const d of event(['a'], '7-0', 'a7')) hub.deliver(d)
  hub.flush()
  t.same(sock.seen.slice(3), ['7-0.6-0 a7'], 'then live')
})

t.test('a position from the future (history lost, clock behind): reset, then the log\'s new events', async t => {
  const { hub, bus, connect } = setup()
  bus.add(...event(['a'], '5-0', 'a5'))
  const { sock } = await connect(['a'], '9-0')
  t.same(sock.frames, ['id: 5-0\nevent: reset\ndata: {"reason":"history","topic":"a"}\n\n'],
    'the reset moves the cursor back to the log\'s newest position, behind the client\'s')
  for (const d of event(['a'], '6-0', 'a6')) hub.deliver(d)
  hub.flush()
  t.same(sock.seen.slice(1), ['6-0 a6'], 'told of the gap, it must not then miss the events that follow it')
})

t.test('an id of other topics (more parts than logs) is a gap in every log', async t => {
  const { bus, connect } = setup()
  bus.add(...event(['a'], '5-0', 'a5'))
  const { sock } = await connect(['a'], '1-0.2-0.3-0')
  t.same(sock.frames, [
    'id: 5-0\nevent: reset\ndata: {"reason":"history","topic":"a"}\n\n',
    'id: 5-0\nevent: reset\ndata: {"reason":"history"}\n\n'
  ], 'each reset carries the cursor: a at its newest, the empty broadcasts at nothing seen')
  t.same(bus.asked.sort(), [['*', undefined], ['a', undefined]])
})

t.test('history failure writes a history-unavailable reset and goes live', async t => {
  const { hub, bus, connect } = setup()
  const other = await connect(['a'], '')
  for (const d of event(['a'], '3-0', 'before')) hub.deliver(d)
  hub.flush()
  t.same(other.sock.seen, ['3-0 before'])
  bus.fail = new Error('redis down')
  const { sock, err } = await connect(['a'], '1-0')
  t.equal(err?.message, 'redis down', 'the error is handed back')
  t.same(sock.frames, ['id: 3-0\nevent: reset\ndata: {"reason":"history-unavailable"}\n\n'], 'from this instance\'s newest')
  for (const d of event(['a'], '4-0', 'live')) hub.deliver(d)
  hub.flush()
  t.same(sock.seen.slice(1), ['4-0 live'], 'live from there')
  t.equal(sock.bufs[sock.bufs.length - 1], other.sock.bufs[other.sock.bufs.length - 1], 'with the group\'s frames')
})

t.test('live events during the replay follow it, once each, at the socket\'s pace', async t => {
  const { hub, bus, connect } = setup()
  const other = await connect(['a'], '')
  for (let i = 1; i <= 6; i++) bus.add(...event(['a'], `${i}-0`, `a${i}`))
  let open!: () => void
  bus.gate = new Promise(resolve => { open = resolve })
  const pending = connect(['a'], '2-0')
  const sock = (): FakeSocket => [...hub.clients].map(c => c.sink as FakeSocket).find(s => s !== other.sock)!
  await new Promise(resolve => setImmediate(resolve))
  sock().fullEvery = 2 // every other write fills the socket: the replay waits for 'drain'
  for (const d of event(['a'], '5-0', 'a5')) hub.deliver(d) // live before history was read; history has it
  open()
  await new Promise(resolve => setImmediate(resolve))
  for (const d of event(['a'], '6-0', 'a6')) hub.deliver(d) // live during the replay
  for (const d of event(['a'], '7-0', 'a7')) hub.deliver(d) // newer than history
  hub.flush()
  const { sock: s, err } = await pending
  for (const d of event(['a'], '8-0', 'a8')) hub.deliver(d)
  hub.flush()
  t.equal(err, null)
  t.ok(s.drains > 0, 'the replay waited for the socket')
  t.same(s.seen, ['3-0 a3', '4-0 a4', '5-0 a5', '6-0 a6', '7-0 a7', '8-0 a8'])
  t.same(other.sock.seen, ['5-0 a5', '6-0 a6', '7-0 a7', '8-0 a8'])
})

t.test('a client that disconnects during the replay gets nothing more', async t => {
  const { hub, bus, connect } = setup()
  for (let i = 1; i <= 10; i++) bus.add(...event(['a'], `${i}-0`, `a${i}`))
  const pending = connect(['a'], '1-0')
  await new Promise(resolve => setImmediate(resolve))
  const client = [...hub.clients][0]
  const s = client.sink as FakeSocket
  s.fullEvery = 2
  await new Promise(resolve => setImmediate(resolve))
  const before = s.bufs.length
  hub.remove(client)
  s.destroy()
  await pending
  t.ok(s.bufs.length <= before + 1, `it stopped (${s.bufs.length} writes)`)
  t.equal(hub.size, 0)
})

t.test('resumes are counted by outcome, and the resets they send by reason', async t => {
  const { bus, counts, connect } = setup()
  for (let i = 1; i <= 3; i++) bus.add(...event(['a'], `${i}-0`, `a${i}`))
  await connect(['a'], '2-0')
  t.same(counts, { outcomes: { replayed: 1, reset: 0, 'history-unavailable': 0, abandoned: 0 }, resets: { history: 0, 'history-unavailable': 0 } }, 'covered: replayed, even with nothing to replay in the broadcasts')
  await connect(['a', 'b'], '0-5') // a's position is not in its log; b and the broadcasts saw nothing yet: fine
  t.same(counts.outcomes, { replayed: 1, reset: 1, 'history-unavailable': 0, abandoned: 0 })
  t.same(counts.resets, { history: 1, 'history-unavailable': 0 }, 'one reset, for the topic with the gap')
  await connect(['a'], '1-0.2-0.3-0') // more parts than logs: a gap in each
  t.same(counts.resets, { history: 3, 'history-unavailable': 0 }, 'a reset for the topic, one for the broadcasts')
  bus.fail = new Error('redis down')
  await connect(['a'], '1-0')
  t.same(counts.outcomes, { replayed: 1, reset: 2, 'history-unavailable': 1, abandoned: 0 })
  t.same(counts.resets, { history: 3, 'history-unavailable': 1 }, 'one reset for the whole stream')

  // The client leaves while history is read.
  bus.fail = null
  let open!: () => void
  bus.gate = new Promise(resolve => { open = resolve })
  const { hub } = setup()
  const sock = new FakeSocket()
  const client = new Client(sock, ['a'])
  const pending = resume(hub, bus, client, sock, ['1-0', ''], counts)
  hub.remove(client)
  open()
  await pending
  t.equal(counts.outcomes.abandoned, 1)
  t.same(sock.frames, [], 'nothing was written to it')
})

t.test('mergeHistories: the logs interleaved by position, each log in its order, the copies of one event once', async t => {
  const d = (log: string, position: string, uid: string | null = null): Delivery =>
    ({ log, position, uid, topics: uid === null ? [log] : ['a', 'b'], priors: null, body: Buffer.from(`data: ${log}${position}\n\n`) })
  const merged = mergeHistories([
    { events: [d('a', '5-0'), d('a', '9-0', 'x'), d('a', '10-0')], gap: false, last: '10-0' },
    { events: [d('b', '7-0'), d('b', '9-1', 'x'), d('b', '9-2')], gap: false, last: '9-2' },
    { events: [], gap: true, last: null }
  ])
  // Numeric order of "<ms>-<seq>", not string order ("10-0" after "9-2").
  t.same(merged.map(e => `${e.log}${e.position!}`), ['a5-0', 'b7-0', 'a9-0', 'b9-2', 'a10-0'])
  t.same(mergeHistories([]), [])
})
