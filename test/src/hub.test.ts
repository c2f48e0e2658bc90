// The hub on its own: topic index, once-per-client delivery, replay seam, slow clients.
import t from 'tap'
import { Client, Hub, type Delivery, type Sink } from '../../src/hub.js'

class FakeSocket implements Sink {
  /** What was written, one entry per write() call. */
  writes: string[] = []
  /** What was written, one entry per SSE frame or comment. */
  get chunks (): string[] {
    return this.writes.join('').split(/(?<=\n\n)/).filter(x => x !== '')
  }

  writableLength = 0
  /** Bytes the peer has not read: grows when `stalled`. */
  stalled = false
  ended = false
  destroyed = false
  write (chunk: Buffer): boolean {
    this.writes.push(chunk.toString())
    if (this.stalled) this.writableLength += chunk.length
    return !this.stalled
  }

  end (): void { this.ended = true }
  destroy (): void { this.destroyed = true }
}

const ev = (id: string | null, topics: string[] | null, data = id ?? 'x'): Delivery =>
  ({ id, topics, frame: Buffer.from(`${id === null ? '' : `id: ${id}\n`}data: ${data}\n\n`) })

function setup (bufferBytes = 1 << 20): { hub: Hub, add: (topics: string[]) => FakeSocket } {
  const hub = new Hub({ bufferBytes })
  return {
    hub,
    add (topics) {
      const s = new FakeSocket()
      hub.add(new Client(s, topics))
      return s
    }
  }
}

t.test('topic events reach subscribers of that topic; broadcasts reach everyone', async t => {
  const { hub, add } = setup()
  const a = add(['a'])
  const b = add(['b'])
  const none = add([])
  hub.deliver(ev('1-0', ['a']))
  hub.deliver(ev('2-0', null))
  hub.deliver(ev('3-0', ['zzz']))
  t.equal(a.chunks.length, 0, 'nothing is written before the end of the turn')
  hub.flush()
  t.equal(a.writes.length, 1, 'the frames of one turn go out in one write')
  t.equal(a.chunks.length, 2)
  t.equal(b.chunks.length, 1)
  t.equal(none.chunks.length, 1)
  t.equal(hub.delivered, 4)
})

t.test('an event on several topics reaches a client of several of them once', async t => {
  const { hub, add } = setup()
  const ab = add(['a', 'b'])
  const b = add(['b'])
  hub.deliver(ev('1-0', ['a', 'b']))
  hub.deliver(ev('2-0', ['b', 'a']))
  hub.flush()
  t.equal(ab.chunks.length, 2)
  t.equal(b.chunks.length, 2)
})

t.test('removed clients get nothing and leave no empty topic behind', async t => {
  const hub = new Hub({ bufferBytes: 1024 })
  const s = new FakeSocket()
  const c = new Client(s, ['a', 'b'])
  hub.add(c)
  t.same(hub.topics().sort(), ['a', 'b'])
  hub.remove(c)
  hub.remove(c)
  t.same(hub.topics(), [])
  hub.deliver(ev('1-0', ['a']))
  hub.flush()
  t.equal(s.chunks.length, 0)
  t.equal(hub.size, 0)
})

t.test('replay seam: live events wait, and those already replayed are not sent twice', async t => {
  const hub = new Hub({ bufferBytes: 1024 })
  const s = new FakeSocket()
  const c = new Client(s, ['a'])
  hub.add(c, true)
  hub.deliver(ev('5-0', ['a'])) // arrives live while the replay runs; history has it too
  t.equal(s.chunks.length, 0, 'held during the replay')
  // History already holds 6-0, which this instance has not received yet.
  for (const id of ['4-0', '5-0', '6-0']) hub.replay(c, ev(id, ['a']).frame)
  hub.goLive(c, '6-0')
  hub.deliver(ev('6-0', ['a'])) // ...and now it does: not sent twice
  hub.deliver(ev('7-0', ['a']))
  hub.deliver(ev(null, ['a'], 'local')) // no id (Redis outage): always sent
  hub.flush()
  t.same(s.chunks.map(x => x.split('\n')[0]), ['id: 4-0', 'id: 5-0', 'id: 6-0', 'id: 7-0', 'data: local'])
})

t.test('deliveries of one turn are written at its end, without being asked', async t => {
  const { hub, add } = setup()
  const a = add(['a'])
  hub.deliver(ev('1-0', ['a']))
  hub.deliver(ev('2-0', ['a']))
  await new Promise(resolve => setImmediate(resolve))
  t.same(a.writes, ['id: 1-0\ndata: 1-0\n\nid: 2-0\ndata: 2-0\n\n'])
})

t.test('a client that stops reading is disconnected past its buffer; the others carry on', async t => {
  const { hub, add } = setup(1000)
  const slow = add(['a'])
  const fast = add(['a'])
  slow.stalled = true
  for (let i = 0; i < 100; i++) {
    hub.deliver(ev(`${i}-0`, ['a'], 'x'.repeat(50)))
    hub.flush() // one event per turn
  }
  t.ok(slow.destroyed, 'slow client destroyed')
  t.ok(slow.writableLength <= 1000 + 80, `its buffer stayed bounded (${slow.writableLength} bytes)`)
  t.equal(fast.chunks.length, 100, 'the fast client got everything')
  t.equal(hub.slowDisconnected, 1)
  t.equal(hub.dropped, 1, 'the frame whose write overflowed the buffer counts as dropped')
  t.equal(hub.size, 1)
  const before = slow.chunks.length
  hub.deliver(ev('200-0', ['a']))
  hub.flush()
  t.equal(slow.chunks.length, before, 'nothing more is written to it')
})

t.test('heartbeats go only to streams idle for a whole interval', async t => {
  const { hub, add } = setup()
  const busy = add(['a'])
  const idle = add(['b'])
  const hb = Buffer.from(': heartbeat\n\n')
  hub.heartbeat(hb) // first tick: both were idle since they were added
  hub.deliver(ev('1-0', ['a']))
  hub.flush()
  hub.heartbeat(hb)
  t.same(busy.chunks, [': heartbeat\n\n', 'id: 1-0\ndata: 1-0\n\n'])
  t.same(idle.chunks, [': heartbeat\n\n', ': heartbeat\n\n'])
  t.equal(hub.delivered, 1, 'heartbeats are not counted as deliveries')
})

t.test('closeAll writes what is queued, then ends every stream', async t => {
  const { hub, add } = setup()
  const socks = [add(['a']), add([]), add(['b'])]
  hub.deliver(ev('1-0', null))
  hub.closeAll()
  t.ok(socks.every(s => s.ended))
  t.ok(socks.every(s => s.chunks.length === 1), 'the last event was not lost')
  t.equal(hub.size, 0)
})

t.test('clients sharing a turn get their own frames, even with the same count and ends', async t => {
  const { hub, add } = setup()
  const ab = add(['a', 'b'])
  const ac = add(['a', 'c'])
  const a1 = add(['a'])
  const a2 = add(['a'])
  hub.deliver(ev('1-0', ['a']))
  hub.deliver(ev('2-0', ['b']))
  hub.deliver(ev('3-0', ['c']))
  hub.deliver(ev('4-0', ['a']))
  hub.flush()
  const ids = (s: FakeSocket): string[] => s.chunks.map(x => x.split('\n')[0])
  t.same(ids(ab), ['id: 1-0', 'id: 2-0', 'id: 4-0'])
  t.same(ids(ac), ['id: 1-0', 'id: 3-0', 'id: 4-0'])
  t.same(ids(a1), ['id: 1-0', 'id: 4-0'])
  t.same(ids(a2), ['id: 1-0', 'id: 4-0'])
})
