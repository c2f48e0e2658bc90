// RedisBus against a real redis-server, driven through a real hub: the seams between the
// subscription, the head read and a resume's history read.
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import type { BusListener } from '../../../src/bus/bus.js'
import { RedisBus } from '../../../src/bus/redis-bus.js'
import { Client, Hub, type Sink } from '../../../src/hub.js'
import { resume, type DrainableSink } from '../../../src/resume.js'
import { Link } from '../../helpers/link.js'
import { TestRedis } from '../../helpers/redis.js'
import { until } from '../../helpers/wait.js'

class MemorySink implements DrainableSink {
  text = ''
  ended = false
  writableLength = 0
  write (chunk: Buffer): boolean { this.text += chunk.toString(); return true }
  end (chunk?: Buffer): void { if (chunk !== undefined) this.text += chunk.toString(); this.ended = true }
  destroy (): void { this.ended = true }
  on (): this { return this }
  off (): this { return this }
  get data (): string[] { return [...this.text.matchAll(/^data: (.*)$/gm)].map(m => m[1]) }
}

interface Instance { bus: RedisBus, hub: Hub, sub: Redis, reader: Redis, lost: string[] }

function instance (t: Test, redis: TestRedis, name: string): Instance {
  const conns = [0, 1, 2].map(() => new Redis(redis.url, { lazyConnect: false, maxRetriesPerRequest: 1 }))
  const [pub, sub, reader] = conns
  const lost: string[] = []
  const hub: Hub = new Hub({ bufferBytes: 1 << 20, watch: log => bus.watch(log), unwatch: log => bus.unwatch(log) })
  const listener: BusListener = {
    deliver: hub.deliver.bind(hub),
    advance: hub.advance.bind(hub),
    head: hub.head.bind(hub),
    ready: hub.ready.bind(hub),
    lost: log => { lost.push(log); hub.closeLog(log) }
  }
  const settings = { prefix: 'test:', instanceId: name, historySize: 100, historyTtlMs: 0, rejectWhenDegraded: false, outboxLimit: 100 }
  const bus: RedisBus = new RedisBus({ pub, sub, reader, ...settings, listener, onError: () => {}, onTrouble: () => {} })
  t.teardown(async () => {
    hub.closeAll()
    await bus.close()
    for (const c of conns) c.disconnect()
  })
  return { bus, hub, sub, reader, lost }
}

// hostAheadMs: this host's wall clock (Date.now()) stepped that far ahead of Redis's after
// the instances started, as an unsynced clock does; the buses heard Redis's clock before.
// late: the SSUBSCRIBE itself reaches Redis only after event 4, so only the read of what
// came since the readers went live can bring it.
async function slowSubscription (t: Test, hostAheadMs: number, late: boolean): Promise<void> {
  const redis = await TestRedis.start()
  t.teardown(async () => await redis.stop())
  const a = instance(t, redis, 'a')
  const b = instance(t, redis, 'b')
  await Promise.all([a.bus.prove(), b.bus.prove()])
  const first = await a.bus.publish([1, 2, 3].map(i => ({ topics: ['r'], body: `data: ${i}\n\n` })))
  if (hostAheadMs !== 0) {
    const now = Date.now
    Date.now = () => now() + hostAheadMs
    t.teardown(() => { Date.now = now })
  }
  // b's subscription to r answers only after the resume's history read (which waits for
  // it at most SUBSCRIBE_WAIT_MS), and event 4 is published in between: the stream must
  // get it once, from the subscription's read of what came since its readers went live.
  let gate = (): void => {}
  const afterHistory = new Promise<void>(resolve => { gate = resolve })
  let published: Promise<unknown> | null = null
  // The bus defined sseHistory on its reader (HISTORY_SCRIPT): wrapped, it runs as before.
  const reader = b.reader as Redis & { sseHistory: (key: string, ...args: Array<string | number>) => Promise<Array<string | number>> }
  const history = reader.sseHistory.bind(reader)
  reader.sseHistory = async (key, ...args) => {
    const reply = await history(key, ...args)
    if (published === null && args[1] === 'read' && key === 'test:{r}') {
      published = a.bus.publish([{ topics: ['r'], body: 'data: 4\n\n' }])
        .then(async () => await new Promise(resolve => setTimeout(resolve, 100)))
        .then(gate)
    }
    return reply
  }
  const sub = b.sub as unknown as { ssubscribe: (...channels: string[]) => Promise<unknown> }
  const ssubscribe = sub.ssubscribe.bind(sub)
  sub.ssubscribe = async (...channels) => {
    if (late && channels.includes('test:{r}')) await afterHistory
    const count = await ssubscribe(...channels)
    if (channels.includes('test:{r}')) await afterHistory
    return count
  }
  const sink = new MemorySink()
  const client = new Client(sink as Sink as DrainableSink, ['r'])
  const err = await resume(b.hub, b.bus, client, sink, [first.ids[2]!, ''])
  t.equal(err, null)
  // A new stream on the same topic: the log is open (unsubscribed) by now, so it is live at once.
  const fresh = new MemorySink()
  b.hub.add(new Client(fresh, ['r']))
  t.ok(published !== null, 'event 4 went out after the history read')
  await published
  await until(() => { b.hub.flush(); return sink.data.length >= 1 || sink.ended }, 5000, 'event 4 on the resumed stream', 10)
  const last = await a.bus.publish([{ topics: ['r'], body: 'data: 5\n\n' }])
  t.ok(last.ids[0] !== null)
  await until(() => { b.hub.flush(); return (sink.data.includes('5') || sink.ended) && fresh.data.includes('5') }, 5000, 'event 5 on both streams', 10)
  t.same(b.lost, [], 'no history reported lost')
  t.notOk(sink.ended, 'the resumed stream is still open')
  t.same(sink.data, ['4', '5'], 'the resumed stream: what it missed, once, then live')
  t.same(fresh.data, ['4', '5'], 'the new stream opened before event 4: both, once')
}

t.test('a subscription slower than a resume\'s wait: the event published in between reaches the resumed stream once, and nothing ends', async t => {
  await slowSubscription(t, 0, false)
})

t.test('the subscription made after event 4, and this host\'s clock 10 s ahead of Redis\'s: what came before it is read in Redis\'s clock, nothing skipped', async t => {
  await slowSubscription(t, 0, true)
  await slowSubscription(t, 10_000, true)
})

t.test('a batch over several topics: each event gets its own position in its topic\'s log; a topic Redis refuses fails only its events', async t => {
  const redis = await TestRedis.start()
  t.teardown(async () => await redis.stop())
  const a = instance(t, redis, 'a')
  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  await until(async () => a.bus.trouble === null, 5000, 'the bus proven')
  const event = (topic: string, n: number): { topics: string[], body: string } => ({ topics: [topic], body: `data: ${topic}${n}\n\n` })
  const { ids } = await a.bus.publish([event('x', 0), event('y', 0), event('x', 1), event('z', 0), event('y', 1)])
  const logIds = async (topic: string): Promise<string[]> => (await admin.xrange(`test:{${topic}}`, '-', '+')).map(([id]) => id)
  const [x, y, z] = [await logIds('x'), await logIds('y'), await logIds('z')]
  t.same(ids, [x[0], y[0], x[1], z[0], y[1]], 'the ids are the events\' positions in their logs, in the batch\'s order')
  // A key of another type where a log would be: Redis refuses that call alone.
  await admin.set('test:{w}', 'not a stream')
  const err = await a.bus.publish([event('x', 2), event('w', 0), event('y', 2), event('v', 0)]).then(() => null, (e: Error & { published?: string[][], unpublished?: string[][] }) => e)
  t.ok(err !== null, 'the batch with a refused topic fails')
  t.same([err?.published, err?.unpublished], [[['x'], [], ['y'], ['v']], [[], ['w'], [], []]], 'naming the one event that was not published')
  t.same([(await logIds('x')).length, (await logIds('y')).length, (await logIds('v')).length], [3, 3, 1], 'the others are in their logs')
  // A log the partial call began holds one small event: fitted, not the 4 KB node Redis gave it.
  const usage = Number(await admin.memory('USAGE', 'test:{v}'))
  t.ok(usage < 2000, `the new log the partial call wrote is fitted: ${usage} bytes`)
})

t.test('after a LATE refusal (the master\'s clock not what the bus took it for), the next publish reads that clock first: its lost reply is settled', async t => {
  const redis = await TestRedis.start()
  t.teardown(async () => await redis.stop())
  const link = await Link.open(redis.port)
  t.teardown(async () => await link.cut())
  // The publisher as plugins/redis.ts makes it: a lost command is failed, never resent.
  const pub = new Redis(link.url, { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0, commandTimeout: 2000, retryStrategy: () => 100 })
  const [sub, admin] = [0, 1].map(() => new Redis(redis.url))
  const hub = new Hub({ bufferBytes: 1 << 20, watch: () => {}, unwatch: () => {} })
  const listener: BusListener = { deliver: () => {}, advance: () => {}, head: () => null, ready: () => {}, lost: () => {} }
  const bus = new RedisBus({ pub, sub, prefix: 'late:', instanceId: 'a', historySize: 100, historyTtlMs: 0, rejectWhenDegraded: false, outboxLimit: 100, listener, onError: () => {}, onTrouble: () => {} })
  t.teardown(async () => {
    hub.closeAll()
    await bus.close()
    for (const c of [pub, sub, admin]) c.disconnect()
  })
  await until(async () => bus.trouble === null && pub.status === 'ready', 5000, 'the bus proven')
  const one = (data: string): Array<{ topics: string[], body: string }> => [{ topics: ['l'], body: `data: ${data}\n\n` }]
  const first = await bus.publish(one('first'))
  // As after a failover onto a master whose clock is 100 s ahead: the bus's offset is
  // 100 s short, so the next deadline is already past there.
  const offsets = (bus as unknown as { offsets: Map<string, number> }).offsets
  for (const [master, offset] of offsets) offsets.set(master, offset - 100_000)
  await t.rejects(bus.publish(one('late')), /reached Redis after its deadline/, 'refused as late, nothing written')

  link.loseReplyTo = 'data: lost\n'
  const started = Date.now()
  const lost = await bus.publish(one('lost')).then(r => r, (e: Error) => e)
  t.equal(link.loseReplyTo, null, 'its reply was lost')
  t.notOk(lost instanceof Error, `settled, not "may or may not": ${lost instanceof Error ? lost.message : ''}`)
  t.ok(Date.now() - started < 8000, `in ${Date.now() - started} ms`)
  const entries = await admin.xrange('late:{l}', '-', '+')
  t.same(entries.map(([, f]) => f[f.indexOf('b') + 1]), ['data: first\n\n', 'data: lost\n\n'], 'the late one never written, the lost one once')
  if (!(lost instanceof Error)) t.same([first.ids[0], lost.ids[0]], entries.map(([id]) => id), 'with its position')
})
