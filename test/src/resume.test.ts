// resume() with a fake socket and bus: replay at the socket's pace, the gap signal, a
// history that cannot be read, and the seam between replayed and live events.
import { EventEmitter } from 'node:events'
import t from 'tap'
import type { Bus, HistoryResult } from '../../src/bus/bus.js'
import { encodeFrame, encodeReset } from '../../src/frame.js'
import { Client, Hub, type Delivery } from '../../src/hub.js'
import { resume, type DrainableSink } from '../../src/resume.js'

class FakeSocket extends EventEmitter implements DrainableSink {
  writes: string[] = []
  /** write() says the send buffer is full (until 'drain'). */
  full = false
  writableLength = 0
  write (chunk: Buffer): boolean {
    this.writes.push(chunk.toString())
    return !this.full
  }

  end (): void {}
  destroy (): void {}
}

const ev = (id: string, topics: string[] | null = ['a']): Delivery => ({ id, topics, frame: encodeFrame(id, `data: ${id}\n\n`) })

function busWith (history: () => Promise<HistoryResult>): Bus & { asked: Array<[string[], string]> } {
  const asked: Array<[string[], string]> = []
  return {
    mode: 'single',
    replayed: 0,
    queued: 0,
    asked,
    publish: async () => ({ ids: [], fanout: 'local' }),
    history: async (topics, after) => { asked.push([topics, after]); return await history() },
    close: async () => {}
  }
}

const turn = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

t.test('replays history after the id, waiting for drain when the socket is full, then goes live', async t => {
  const hub = new Hub({ bufferBytes: 1 << 20 })
  const socket = new FakeSocket()
  const client = new Client(socket, ['a'])
  const bus = busWith(async () => ({ events: [ev('2-0'), ev('3-0'), ev('4-0')], gap: false, last: '4-0' }))
  socket.full = true
  const done = resume(hub, bus, client, socket, '1-0')
  await turn()
  t.same(bus.asked, [[['a'], '1-0']], 'asked history for its topics after its id')
  t.same(socket.writes, [ev('2-0').frame.toString()], 'one frame, then it waits for the socket')
  hub.deliver(ev('3-0')) // live, while the replay runs: history has it too
  hub.flush()
  t.equal(socket.writes.length, 1, 'live events wait for the replay')
  socket.full = false
  socket.emit('drain')
  t.equal(await done, null)
  t.same(socket.writes, ['2-0', '3-0', '4-0'].map(id => ev(id).frame.toString()), 'the rest after drain')
  hub.flush()
  t.equal(socket.writes.length, 3, 'the held copy of a replayed event is dropped')
  hub.deliver(ev('4-0')) // replayed from history before this instance got it live
  hub.deliver(ev('5-0'))
  hub.flush()
  t.same(socket.writes.slice(3), [ev('5-0').frame.toString()], 'then only what is newer than the replay')
  t.equal(hub.replayed, 3)
})

t.test('a gap with nothing left to replay: a reset that moves the client to the newest id', async t => {
  const hub = new Hub({ bufferBytes: 1 << 20 })
  const socket = new FakeSocket()
  const client = new Client(socket, ['a'])
  t.equal(await resume(hub, busWith(async () => ({ events: [], gap: true, last: '9-0' })), client, socket, '1-0'), null)
  t.same(socket.writes, [encodeReset('9-0', 'history').toString()])
  t.match(socket.writes[0], /^id: 9-0\nevent: reset\n/)
  hub.deliver(ev('9-0'))
  hub.deliver(ev('10-0'))
  hub.flush()
  t.same(socket.writes.slice(1), [ev('10-0').frame.toString()], 'live from after that id')
  t.equal(hub.replayed, 0, 'the reset is not a replayed event')
})

t.test('a gap before events still in history: a reset without id, then those events', async t => {
  const hub = new Hub({ bufferBytes: 1 << 20 })
  const socket = new FakeSocket()
  const client = new Client(socket, ['a'])
  await resume(hub, busWith(async () => ({ events: [ev('7-0'), ev('8-0')], gap: true, last: '8-0' })), client, socket, '1-0')
  t.same(socket.writes, [encodeReset(null, 'history').toString(), ev('7-0').frame.toString(), ev('8-0').frame.toString()])
  t.notMatch(socket.writes[0], /^id:/, 'the position moves with the replayed events instead')
})

t.test('history that cannot be read: reset history-unavailable, the error returned, and live events', async t => {
  const hub = new Hub({ bufferBytes: 1 << 20 })
  const socket = new FakeSocket()
  const client = new Client(socket, ['a'])
  const failure = await resume(hub, busWith(async () => { throw new Error('Redis is down') }), client, socket, '1-0')
  t.equal(failure?.message, 'Redis is down')
  t.same(socket.writes, ['event: reset\ndata: {"reason":"history-unavailable"}\n\n'])
  hub.deliver(ev('2-0'))
  hub.flush()
  t.same(socket.writes.slice(1), [ev('2-0').frame.toString()], 'the stream went live')
  t.equal(hub.size, 1)
})

t.test('a client that goes away during the replay gets nothing more', async t => {
  const hub = new Hub({ bufferBytes: 1 << 20 })
  const socket = new FakeSocket()
  const client = new Client(socket, ['a'])
  socket.full = true
  const done = resume(hub, busWith(async () => ({ events: [ev('2-0'), ev('3-0')], gap: false, last: '3-0' })), client, socket, '1-0')
  await turn()
  hub.remove(client)
  socket.emit('close')
  t.equal(await done, null)
  t.equal(socket.writes.length, 1, 'the replay stopped')
  t.equal(hub.size, 0)
})
