// The cluster bus. One Lua script gives each event an id, appends it to the history
// stream of each of its topics and publishes it, atomically: Redis runs scripts one at
// a time, so the publish order is the id order on every instance. Every instance, the
// publishing one included, delivers only what comes back through Pub/Sub, in that order.
import type { Redis } from 'ioredis'
import { compareIds } from '../event-id.js'
import { encodeFrame } from '../frame.js'
import type { Delivery } from '../hub.js'
import { DegradedError, type Bus, type HistoryResult, type Outgoing, type PublishResult } from './bus.js'
import { HISTORY_SCRIPT, PUBLISH_SCRIPT } from './redis-scripts.js'
import { MessageReader, pack, parseHistory, type HistoryReply } from './redis-wire.js'

interface BusCommands {
  ssePublish (key: string, ...args: Array<string | number | Buffer>): Promise<string[]>
  sseHistory (key: string, ...args: Array<string | number>): Promise<Array<string | number>>
}

export interface RedisBusOptions {
  pub: Redis
  sub: Redis
  prefix: string
  /** Tags the events this instance delivered itself while Redis was down. */
  instanceId: string
  historySize: number
  historyTtlMs: number
  /** Refuse publishes while Redis is down instead of delivering on this instance only. */
  rejectWhenDegraded: boolean
  /** Events accepted during an outage that wait for Redis; past it, publishes get 503. */
  outboxLimit: number
  deliver: (d: Delivery) => void
  /** Whether any local client would get an event of these topics (null: a broadcast). */
  wants: (topics: string[] | null) => boolean
  /** Topics with local clients: what to catch up on after an outage. */
  topics: () => string[]
  /** History no longer holds all that was missed: the clients must resume on their own. */
  onGap: () => void
  onError: (err: Error, what: string) => void
}

interface Batch {
  events: Outgoing[]
  waiters: Array<{ start: number, count: number, resolve: (ids: string[]) => void, reject: (err: Error) => void }>
}

/** Events per script call, past which a turn's publishes go out as several calls. */
const CALL_EVENTS = 256

export class RedisBus implements Bus {
  readonly mode = 'cluster' as const
  private readonly opts: RedisBusOptions
  private readonly pub: Redis & BusCommands
  private readonly channel: string
  private readonly lastKey: string
  /** Id of the newest event handed to the hub; later ones only, after a catch-up. */
  private cursor: string | null = null
  /** Before the first event, catch up from the start: clients may have come first. */
  private readonly since = `${Date.now()}-0`
  /** Live messages held while catching up from history. */
  private held: Buffer[] | null = null
  /** Events delivered here during an outage, to be published once Redis is back. */
  private readonly outbox: Outgoing[] = []
  private flushing = false
  /** Publishes waiting for the end of this event-loop turn. */
  private batch: Batch | null = null
  /** Batches of this turn already full, sent with the last one. */
  private readonly full: Batch[] = []
  private generation = 0
  private closing = false
  private readonly reader = new MessageReader()
  replayed = 0

  constructor (opts: RedisBusOptions) {
    this.opts = opts
    this.pub = opts.pub as Redis & BusCommands
    this.channel = opts.prefix + 'events'
    this.lastKey = opts.prefix + 'last'
    this.pub.defineCommand('ssePublish', { numberOfKeys: 1, lua: PUBLISH_SCRIPT })
    this.pub.defineCommand('sseHistory', { numberOfKeys: 1, lua: HISTORY_SCRIPT })
    opts.sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.onMessage(message))
    opts.sub.on('ready', () => { this.onSubReady().catch(err => opts.onError(err, 'subscribe')) })
    opts.pub.on('ready', () => { this.flush() })
    if (opts.sub.status === 'ready') this.onSubReady().catch(err => opts.onError(err, 'subscribe'))
  }

  /** Events waiting for Redis to come back. */
  get queued (): number {
    return this.outbox.length
  }

  async publish (events: Outgoing[]): Promise<PublishResult> {
    // While the outbox drains, new events queue behind it to keep this instance's order.
    if (this.pub.status !== 'ready' || this.outbox.length > 0) return this.publishLocal(events)
    return { ids: await this.enqueue(events), fanout: 'cluster' }
  }

  // Publishes of one event-loop turn go to Redis as one script call: one round trip, one
  // Pub/Sub message for every instance to parse, whatever the number of publishers.
  private async enqueue (events: Outgoing[]): Promise<string[]> {
    return new Promise((resolve, reject) => {
      let batch = this.batch
      if (batch !== null && batch.events.length >= CALL_EVENTS) {
        this.full.push(batch)
        batch = null
      }
      if (batch === null) {
        if (this.full.length === 0) setImmediate(this.sendBatch)
        batch = { events: [], waiters: [] }
        this.batch = batch
      }
      batch.waiters.push({ start: batch.events.length, count: events.length, resolve, reject })
      for (const e of events) batch.events.push(e)
    })
  }

  // Several calls rather than one long one: Redis answers the first while the next runs,
  // so the replies (and the publishers' next requests) overlap Redis's work.
  private readonly sendBatch = (): void => {
    const batches = this.full.splice(0)
    if (this.batch !== null) batches.push(this.batch)
    this.batch = null
    for (const batch of batches) {
      this.send(batch.events, '').then(
        ids => { for (const w of batch.waiters) w.resolve(ids.slice(w.start, w.start + w.count)) },
        err => { for (const w of batch.waiters) w.reject(err) }
      )
    }
  }

  async history (topics: string[], after: string): Promise<HistoryResult> {
    return this.read(topics, after, true)
  }

  async close (): Promise<void> {
    this.closing = true
    if (this.opts.sub.status === 'ready') await this.opts.sub.unsubscribe(this.channel).catch(() => {})
    if (this.outbox.length > 0 && this.pub.status === 'ready' && !this.flushing) await this.drain().catch(() => {})
    if (this.outbox.length > 0) {
      this.opts.onError(new Error(`${this.outbox.length} events accepted during the outage never reached the other instances`), 'shutdown')
    }
  }

  private async send (events: Outgoing[], origin: string): Promise<string[]> {
    return this.pub.ssePublish(this.lastKey, this.opts.prefix, this.opts.historySize, this.opts.historyTtlMs, this.channel, pack(events, origin))
  }

  private async read (topics: string[], after: string, unknownIsGap: boolean): Promise<HistoryReply> {
    const keys = [this.opts.prefix + 'b']
    for (const t of topics) keys.push(this.opts.prefix + 't:' + t)
    return parseHistory(await this.pub.sseHistory(this.lastKey, after, this.opts.historyTtlMs, unknownIsGap ? 1 : 0, ...keys))
  }

  // Redis down: deliver here now (no id: nothing to resume from) and keep the event for
  // the other instances, published when Redis is back.
  private publishLocal (events: Outgoing[]): PublishResult {
    if (this.opts.rejectWhenDegraded && this.pub.status !== 'ready') throw new DegradedError()
    if (this.outbox.length + events.length > this.opts.outboxLimit) throw new DegradedError(this.opts.outboxLimit)
    for (const e of events) {
      this.outbox.push(e)
      this.opts.deliver({ id: null, topics: e.topics, frame: encodeFrame(null, e.body) })
    }
    this.flush()
    return { ids: events.map(() => null), fanout: 'local' }
  }

  private flush (): void {
    if (this.flushing || this.outbox.length === 0 || this.pub.status !== 'ready') return
    this.flushing = true
    this.drain().catch(err => this.opts.onError(err, 'outbox publish')).finally(() => { this.flushing = false })
  }

  private async drain (): Promise<void> {
    while (this.outbox.length > 0 && this.pub.status === 'ready') {
      const batch = this.outbox.slice(0, 500)
      await this.send(batch, this.opts.instanceId)
      this.outbox.splice(0, batch.length)
    }
  }

  private onMessage (message: Buffer): void {
    if (this.held !== null) {
      this.held.push(message)
      return
    }
    this.deliverBatch(message, false)
  }

  // Live messages come once each, in order: only those held during a catch-up can repeat
  // what it fetched, so only they are checked against the cursor.
  private deliverBatch (message: Buffer, afterCatchUp: boolean): void {
    const reader = this.reader
    reader.reset(message)
    while (reader.next()) {
      const id = reader.id
      if (afterCatchUp && this.cursor !== null && compareIds(id, this.cursor) <= 0) continue
      this.cursor = id
      // Delivered here already, during the outage it was published in.
      if (reader.isFrom(this.opts.instanceId)) continue
      const topics = reader.readTopics()
      if (!this.opts.wants(topics)) continue
      this.opts.deliver({ id, topics, frame: reader.frame() })
    }
  }

  // (Re)connected: subscribe, then fetch from history what was published while away,
  // holding live messages until it is delivered. The id cursor drops the overlap.
  private async onSubReady (): Promise<void> {
    if (this.closing) return
    const generation = ++this.generation
    this.held ??= []
    try {
      await this.opts.sub.subscribe(this.channel)
    } catch (err) {
      this.opts.onError(err as Error, 'subscribe')
      return // the next 'ready' tries again; held messages wait for it
    }
    // Nothing delivered yet: clients that came while Redis was unreachable still want
    // what was published since this instance started.
    const from = this.cursor ?? (this.opts.topics().length > 0 ? this.since : null)
    while (from !== null && !this.closing && generation === this.generation) { // eslint-disable-line no-unmodified-loop-condition
      try {
        await this.catchUp(from)
        break
      } catch (err) {
        this.opts.onError(err as Error, 'catch-up')
        if (this.opts.sub.status !== 'ready') return
        await new Promise(resolve => setTimeout(resolve, 500))
      }
    }
    if (generation !== this.generation) return
    const held = this.held
    this.held = null
    for (const message of held) this.deliverBatch(message, true)
  }

  private async catchUp (after: string): Promise<void> {
    // A Redis that restarted empty has no last id: nothing to catch up on, not a gap.
    const { events, gap } = await this.read(this.opts.topics(), after, false)
    if (gap) this.opts.onGap()
    for (const d of events) {
      if (this.cursor !== null && compareIds(d.id, this.cursor) <= 0) continue
      this.cursor = d.id
      if (d.origin === this.opts.instanceId) continue
      this.replayed++
      this.opts.deliver(d)
    }
  }
}
