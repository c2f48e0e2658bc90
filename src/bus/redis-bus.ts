// The cluster bus. Each topic is a log: a Redis Stream (its history) and a sharded
// Pub/Sub channel of the same name, under one hash tag, so a publish is one script on the
// topic's own master (a Redis Cluster) or on the one Redis. The script appends, takes
// Redis's position for each event and publishes the records on the channel; every
// instance, the publishing one included, delivers what comes back, in the log's order.
// An instance subscribes only to the logs its clients read.
import { randomBytes } from 'node:crypto'
import calculateSlot from 'cluster-key-slot'
import { ReplyError, type Cluster, type Redis } from 'ioredis'
import { BROADCAST } from '../cursor.js'
import { compareIds, idMillis } from '../event-id.js'
import { DegradedError, NotPublishedError, PartialPublishError, type Bus, type BusListener, type LogHistory, type Outgoing, type PublishResult } from './bus.js'
import { CLOCK_SCRIPT, HISTORY_SCRIPT, PUBLISH_SCRIPT, SETTLE_SCRIPT } from './redis-scripts.js'
import { keyLog, logKey, MessageReader, pack, parseHistory, type HistoryReply } from './redis-wire.js'

interface BusCommands {
  ssePublish (key: string, ...args: Array<string | number | Buffer>): Promise<string[]>
  /** PUBLISH_SCRIPT with several logs: the number of keys, the keys, then its ARGV. */
  ssePublishLogs (keys: number, ...args: Array<string | number | Buffer>): Promise<string[]>
  sseHistory (key: string, ...args: Array<string | number>): Promise<Array<string | number>>
  sseSettle (key: string, ...args: Array<string | number>): Promise<Array<string | number>>
  sseClock (key: string): Promise<[string, string]>
}

type Client = (Redis | Cluster) & BusCommands

export interface RedisBusOptions {
  pub: Redis | Cluster
  sub: Redis | Cluster
  /** History reads, off the publisher's connection (and its short timeout). */
  reader?: Redis | Cluster
  prefix: string
  /** Tags the events this instance delivered itself while Redis was down. */
  instanceId: string
  historySize: number
  historyTtlMs: number
  /** Refuse publishes while Redis is down instead of delivering on this instance only. */
  rejectWhenDegraded: boolean
  /** Events accepted during an outage that wait for Redis; past it, publishes get 503. */
  outboxLimit: number
  listener: BusListener
  onError: (err: Error, what: string) => void
  /** The path proof found a problem (its reason), or it went away (null). */
  onTrouble: (reason: string | null) => void
  /** A publish script call or history read Redis answered, and its round trip in ms; for metrics. */
  answered?: (command: 'publish' | 'history', ms: number) => void
}

/** One log this instance reads. */
interface Watch {
  /** Live messages held while its subscription or catch-up is under way; null when live. */
  held: Buffer[] | null
  /** Set while the log has no reader left, until it is given up. */
  linger: NodeJS.Timeout | null
  /** Bumped by every (re)subscription, so a stale one stops. */
  generation: number
  /** Its head was read once: from then on a reconnection catches up from the hub's head. */
  subscribed: boolean
  /** Its readers went live before it was subscribed, at this time (as a position). */
  since: string | null
  /**
   * The newest position the last history read saw: live messages up to it may come after
   * its reply (another connection) and repeat what it covered. Null once one passes it.
   */
  covered: string | null
  /** History reads of the log waiting for it to go live (see untilLive). */
  reads: Array<() => void> | null
}

interface Pending { event: Outgoing, waiter: Waiter, index: number }
interface SharedRead {
  log: string
  /** The oldest position of its sharers ('' for those that saw nothing of the log). */
  from: string
  sharers: Array<{ after: string, resolve: (r: HistoryReply) => void, reject: (err: Error) => void }>
}
interface Waiter {
  ids: Array<string | null>
  events: Outgoing[]
  /** The events that did not reach all their logs: the logs they reached (null until one). */
  reached: Map<number, string[]> | null
  left: number
  failed: Error | null
  resolve: (ids: Array<string | null>) => void
  reject: (err: Error) => void
}

/** The events of one log in a publish call, with their uids and priors (see pack()). */
type Parts = Array<{ event: Outgoing, uid: string, priors: string }>

/** A publish script call, ready to be sent (RedisBus.call). */
interface Call {
  groups: Array<{ log: string, part: Parts }>
  keys: string[]
  master: string
  /** In the master's clock; '' for none (its clock unknown). */
  deadline: number | ''
  /** Written with its entries: a lost reply is settled by it. */
  tag: string
  packs: Buffer[]
  started: number
}

/** The copies of an event of several topics stopped at a log: those before it got theirs. */
class CopiesFailed extends Error {
  constructor (readonly written: string[], readonly positions: string[], readonly reason: Error) {
    super(reason.message)
  }
}

/** Events per script call, past which a turn's publishes to one log go as several calls. */
const CALL_EVENTS = 256
/** Logs per script call on one Redis, past which a turn's publishes go as several calls. */
const CALL_LOGS = 128
/** How long a log without readers stays subscribed: reconnecting clients find it ready. */
const LINGER_MS = 2000
/** How long a history read waits for other resumes of its log to join it, in a storm. */
const STORM_WAIT_MS = 50
/** How long a new stream waits for its topics' subscription before it opens anyway. */
const SUBSCRIBE_WAIT_MS = 2000
/** While a proof fails, how often it is tried again. */
const PROOF_RETRY_MS = 1000
/** The wait before the next try after `failures` failed ones in a row: 100 ms doubling to 2 s. */
const backoffMs = (failures: number): number => Math.min(100 * 2 ** failures, 2000)
/**
 * How long after it is sent a publish call may still write (its deadline, in its master's
 * clock): past the publisher's 2 s command timeout, so a call that times out can be settled.
 */
const LATE_MS = 3000
/** How long past its deadline a call whose reply was lost is tried to be settled before it is answered unknown. */
const SETTLE_MS = 2000
/** ioredis refused the command before sending it (no connection): it never reached Redis. */
const NOT_SENT = /enableOfflineQueue options is false/
/** This host's clock in ms, monotonic (Date.now() can step). */
const clockMs = (): number => performance.timeOrigin + performance.now()

/** A master's clock offset that can be used: known, and not put in doubt by a LATE refusal (NaN). */
const known = (offset: number | undefined): offset is number => offset !== undefined && !Number.isNaN(offset)
/** Redis refusing a command (not a lost connection): health says so until a proof passes. */
const REFUSAL = /NOPERM|can't run this command|NOSCRIPT|READONLY|OOM|CROSSSLOT|ERR/

export class RedisBus implements Bus {
  readonly mode = 'cluster' as const
  private readonly opts: RedisBusOptions
  private readonly pub: Client
  private readonly reader: Client
  /** History reads waiting for a slot, by log: resumes join them. */
  private readonly waiting = new Map<string, SharedRead>()
  private readonly lastRead = new Map<string, number>()
  /** History reads in flight, and those waiting for a slot. */
  private reading = 0
  private readonly readQueue: Array<() => void> = []
  /** Reads so far, for /metrics (a storm's cost). */
  historyReads = 0
  private readonly watches = new Map<string, Watch>()
  /** When a failed (re)subscription was last logged. */
  private retryLogged = 0
  /** Events delivered here during an outage, to be published once Redis is back. */
  private readonly outbox: Outgoing[] = []
  /** Copies of an outbox event of several topics already written, when the rest failed. */
  private readonly outboxCopies = new WeakMap<Outgoing, { uid: string, positions: string[] }>()
  private draining = false
  /** A failed drain's next try, and how many failed in a row (its backoff). */
  private drainRetry: NodeJS.Timeout | null = null
  private drainFailures = 0
  private drainLogged = 0
  /** Why the last drain failed, until one succeeds. */
  private drainError: string | null = null
  /** Publishes of this event-loop turn, in order. */
  private turn: Pending[] | null = null
  /** Turns that must go one after the other (they have events of several topics). */
  private tail: Promise<void> = Promise.resolve()
  private pending = 0
  private readonly records = new MessageReader()
  private readonly uidStem = randomBytes(4).toString('hex')
  private uidCount = 0
  /** Publish calls so far: each gets a tag, kept with its entries, to settle a lost reply. */
  private calls = 0
  /**
   * Per master (its address; 'redis' standalone): its clock minus this host's, in ms, as its
   * last reply showed; NaN after a LATE refusal, until its clock is read again.
   */
  private readonly offsets = new Map<string, number>()
  /** Per master, its clock being read (one read for the calls that wait for it). */
  private readonly clockReads = new Map<string, Promise<number | undefined>>()
  private closing = false
  replayed = 0

  constructor (opts: RedisBusOptions) {
    this.opts = opts
    this.pub = opts.pub as Client
    this.pub.defineCommand('ssePublish', { numberOfKeys: 1, lua: PUBLISH_SCRIPT })
    this.pub.defineCommand('ssePublishLogs', { lua: PUBLISH_SCRIPT })
    this.pub.defineCommand('sseSettle', { numberOfKeys: 1, lua: SETTLE_SCRIPT })
    this.pub.defineCommand('sseClock', { numberOfKeys: 1, lua: CLOCK_SCRIPT })
    this.reader = (opts.reader ?? opts.pub) as Client
    this.reader.defineCommand('sseHistory', { numberOfKeys: 1, lua: HISTORY_SCRIPT })
    if (this.reader !== this.pub) this.reader.on('ready', () => this.resubscribeAll())
    opts.sub.on('smessageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel, message))
    // A standalone subscriber comes back through 'ready'. A cluster's sharded subscribers
    // resubscribe by themselves after a lost connection, a failover or a slot that moved,
    // then say 'subscribersReady' (in the same turn: nothing has arrived yet): what was
    // published meanwhile went nowhere, so catch up from history, holding what comes live.
    opts.sub.on('ready', () => this.resubscribeAll())
    opts.sub.on('subscribersReady', () => this.resubscribeAll())
    opts.sub.on('+node', () => this.resubscribeAll())
    // Subscribing also reads history: it needs both connections.
    opts.pub.on('ready', () => {
      this.drainOutbox()
      this.resubscribeAll()
    })
    for (const c of [opts.pub, opts.sub]) {
      c.on('ready', () => this.scheduleProof())
    }
  }

  /** Why this instance cannot deliver cluster-wide now, or null when it can. */
  get trouble (): string | null {
    if (this.pub.status !== 'ready' || this.opts.sub.status !== 'ready') return 'Redis is not connected'
    // Until its outbox is drained, what it accepted in an outage has not reached the others.
    if (this.outbox.length > 0) return `${this.outbox.length} events accepted here during an outage are not yet published to the other instances (${this.drainError ?? 'publishing them now'})`
    return this.problem
  }

  /**
   * Proves the whole path once: subscribe to a log of this instance's own, publish an
   * event to it through the publish script, and receive it. What fails is the reason
   * /health gives, and the one log line an operator needs (NOPERM, a script refused...).
   */
  async prove (): Promise<string | null> {
    const log = `*probe:${this.opts.instanceId}`
    const key = logKey(this.opts.prefix, log)
    const sub = this.opts.sub as Redis
    let problem: string | null = null
    /** What Redis (or ioredis) said when a command of the proof failed. */
    let cause: string | null = null
    let unreachable = false
    let timer: NodeJS.Timeout | undefined
    try {
      try {
        await sub.ssubscribe(key)
      } catch (err) {
        cause = (err as Error).message
        throw new Error(`subscribing (SSUBSCRIBE) is refused: ${cause}`)
      }
      const received = new Promise<void>((resolve, reject) => {
        this.probeArrived = resolve
        timer = setTimeout(() => reject(new Error('this instance\'s own subscription did not receive its probe event within 10 s')), 10_000)
      })
      try {
        // As a publish does: a master whose connection is still being made is waited for,
        // not taken for out of reach (the proof would pass without having published).
        const master = await this.masterConnected(key)
        const [id] = await this.pub.ssePublish(key, 1, 60_000, pack([{ event: { topics: [log], body: 'data: probe\n\n' }, uid: '', priors: '' }], this.opts.instanceId))
        // Its master's clock, for the deadline of the first publish there.
        if (master !== '' && !this.offsets.has(master)) this.offsets.set(master, idMillis(id) - clockMs())
      } catch (err) {
        cause = (err as Error).message
        throw new Error(`the publish script (EVAL/EVALSHA, XADD, XTRIM, PEXPIRE, SPUBLISH) is refused: ${cause}`)
      }
      await received
    } catch (err) {
      // On a cluster, the probe's master out of reach fails only the publishes to its
      // topics, and each says so: no reason to keep every publish on this instance.
      unreachable = cause !== null && !REFUSAL.test(cause) && 'nodes' in this.pub
      problem = unreachable ? null : (err as Error).message
    } finally {
      clearTimeout(timer)
      this.probeArrived = null
      if (sub.status === 'ready') sub.sunsubscribe(key).catch(() => {})
    }
    const before = this.problem
    this.problem = problem
    if (problem !== before) this.opts.onTrouble(problem)
    // A refusal can pass (memory freed, an ACL fixed) without the connection dropping:
    // nothing else would prove the path again, and publishes would stay local.
    if (problem === null) this.drainOutbox()
    if (problem !== null || unreachable) this.scheduleProof(PROOF_RETRY_MS)
    return problem
  }

  private probeArrived: (() => void) | null = null
  private problem: string | null = null
  private proofTimer: NodeJS.Timeout | null = null

  private scheduleProof (ms = 50): void {
    if (this.proofTimer !== null || this.closing) return
    this.proofTimer = setTimeout(() => {
      this.proofTimer = null
      if (this.pub.status !== 'ready' || this.opts.sub.status !== 'ready' || this.closing) return
      this.prove().catch(() => {})
    }, ms).unref()
  }

  get queued (): number {
    return this.outbox.length
  }

  async publish (events: Outgoing[]): Promise<PublishResult> {
    // While the outbox drains, new events queue behind it to keep this instance's order.
    // Without its own subscription this instance's clients would miss the event: it is
    // delivered here, and published from the outbox once the path is back.
    if (this.pub.status !== 'ready' || this.opts.sub.status !== 'ready' || this.outbox.length > 0 || this.problem !== null) return this.publishLocal(events)
    try {
      return { ids: await this.enqueue(events), fanout: 'cluster' }
    } catch (err) {
      if (REFUSAL.test((err as Error).message)) this.scheduleProofSoon()
      throw err
    }
  }

  private scheduleProofSoon (): void {
    if (this.problem === null) {
      this.problem = 'publishing through Redis fails'
      this.opts.onTrouble(this.problem)
    }
    this.scheduleProof()
  }

  async history (log: string, after: string | null | undefined): Promise<LogHistory> {
    await this.untilLive(log)
    if (after === undefined) return { events: [], gap: true, last: (await this.limited(async () => await this.read(log, '', 'head'))).last }
    // A reconnect storm: the clients of a dead instance resume the same topics from the
    // same or nearby positions. Resumes of a log join its read while that waits for a
    // slot: not yet sent, it will cover what was published before each of them asked.
    const kind = after === null ? `${log}\n` : log
    let read = this.waiting.get(kind)
    if (read === undefined) {
      const entry: SharedRead = { log, from: after ?? '', sharers: [] }
      read = entry
      this.waiting.set(kind, entry)
      // A storm on this log (a read of it moments ago): wait for the rest of it to join.
      const wait = Date.now() - (this.lastRead.get(log) ?? 0) < 200 ? STORM_WAIT_MS : 1
      this.lastRead.set(log, Date.now())
      setTimeout(() => {
        this.limited(async () => {
          this.waiting.delete(kind)
          return await this.read(log, entry.from, 'read')
        }).then(reply => this.serve(entry, reply), err => { for (const x of entry.sharers) x.reject(err as Error) })
      }, wait)
    } else if (after !== null && compareIds(after, read.from) < 0) {
      read.from = after
    }
    const entry = read
    return await new Promise((resolve, reject) => entry.sharers.push({ after: after ?? '', resolve, reject }))
  }

  /**
   * A resume reads its logs' history only once they are subscribed and live: read before,
   * it would miss what is published before the subscription's first read, which moves this
   * instance's head past it. Not longer than a new stream waits for its subscription.
   */
  private async untilLive (log: string): Promise<void> {
    const w = this.watches.get(log)
    if (w === undefined || w.held === null) return
    await new Promise<void>(resolve => {
      const timer = setTimeout(resolve, SUBSCRIBE_WAIT_MS).unref()
      ;(w.reads ??= []).push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  // The read went from the oldest position asked; a later one found in it is served from
  // it, one not found (its own gap) gets a read of its own.
  private serve (entry: SharedRead, reply: HistoryReply): void {
    for (const x of entry.sharers) {
      if (x.after === entry.from) {
        x.resolve(reply)
        continue
      }
      const at = reply.events.findIndex(e => e.position === x.after)
      if (at !== -1) x.resolve({ last: reply.last, gap: false, events: reply.events.slice(at + 1) })
      else if (reply.last === x.after) x.resolve({ last: reply.last, gap: false, events: [] })
      else this.limited(async () => await this.read(entry.log, x.after, 'read')).then(x.resolve, x.reject)
    }
  }

  /** At most 8 history reads in flight: a storm queues here (and shares), not in Redis's output buffers. */
  private async limited<T> (read: () => Promise<T>): Promise<T> {
    if (this.reading >= 8) await new Promise<void>(resolve => this.readQueue.push(resolve))
    this.reading++
    try {
      return await read()
    } finally {
      this.reading--
      this.readQueue.shift()?.()
    }
  }

  watch (log: string): void {
    const w = this.watches.get(log)
    if (w !== undefined) {
      if (w.linger !== null) clearTimeout(w.linger)
      w.linger = null
      if (w.held === null) this.opts.listener.ready(log, undefined)
      return
    }
    this.watches.set(log, { held: [], linger: null, generation: 0, subscribed: false, since: null, covered: null, reads: null })
    // Redis down, or slow to answer: the log's readers go live on this instance's events
    // alone, and the subscription, once made, brings the rest.
    const sub = this.opts.sub as Redis
    if (sub.status !== 'ready' || this.pub.status !== 'ready') this.openUnsubscribed(log)
    else setTimeout(() => { if (this.watches.get(log)?.subscribed === false) this.openUnsubscribed(log) }, SUBSCRIBE_WAIT_MS).unref()
    this.refresh(log, 0)
  }

  // Its readers go live before the subscription: once made, it brings what was published
  // since, a second early. In the master's clock as its last reply showed it (this host's
  // clock when none is known): a host clock ahead of Redis's would skip what came between.
  private openUnsubscribed (log: string): void {
    const w = this.watches.get(log)
    if (w === undefined || w.since !== null) return
    const offset = this.offsetOf(this.ownerOf(logKey(this.opts.prefix, log)))
    const now = known(offset) ? Math.floor(clockMs() + offset) : Date.now()
    w.since = `${now - 1000}-0`
    this.opts.listener.ready(log, undefined)
  }

  unwatch (log: string): void {
    const w = this.watches.get(log)
    if (w === undefined || w.linger !== null) return
    w.linger = setTimeout(() => {
      this.watches.delete(log)
      const sub = this.opts.sub as Redis
      if (sub.status === 'ready') sub.sunsubscribe(logKey(this.opts.prefix, log)).catch(() => {})
    }, LINGER_MS).unref()
  }

  async close (): Promise<void> {
    this.closing = true
    if (this.proofTimer !== null) clearTimeout(this.proofTimer)
    if (this.drainRetry !== null) clearTimeout(this.drainRetry)
    for (const w of this.watches.values()) if (w.linger !== null) clearTimeout(w.linger)
    const sub = this.opts.sub as Redis
    const channels = [...this.watches.keys()].map(log => logKey(this.opts.prefix, log))
    this.watches.clear()
    if (sub.status === 'ready') await Promise.all(channels.map(async c => await sub.sunsubscribe(c).catch(() => {})))
    if (this.outbox.length > 0 && this.pub.status === 'ready' && !this.draining) await this.drain().catch(() => {})
    if (this.outbox.length > 0) {
      this.opts.onError(new Error(`${this.outbox.length} events accepted during the outage never reached the other instances`), 'shutdown')
    }
  }

  // Publishes of one event-loop turn go to Redis as one script call (one per log on a
  // Redis Cluster): one round trip, and one Pub/Sub message per log, whatever the number of publishers.
  private async enqueue (events: Outgoing[]): Promise<Array<string | null>> {
    return await new Promise((resolve, reject) => {
      const waiter: Waiter = { ids: new Array(events.length).fill(null), events, reached: null, left: events.length, failed: null, resolve, reject }
      if (this.turn === null) {
        this.turn = []
        setImmediate(this.sendTurn)
      }
      for (let i = 0; i < events.length; i++) this.turn.push({ event: events[i], waiter, index: i })
    })
  }

  private readonly sendTurn = (): void => {
    const turn = this.turn!
    this.turn = null
    // An event of several topics is written to its logs one after the other, each copy
    // carrying the positions of those before it (see Delivery.priors); a turn with one
    // waits for the turns before it, and the turns after it wait for it, to keep each log's order.
    const multi = turn.some(p => p.event.topics !== null && p.event.topics.length > 1)
    if (!multi && this.pending === 0) {
      this.sendSingles(turn).catch(() => {}) // each call settles its own publishes
      return
    }
    this.pending++
    this.tail = this.tail.then(async () => await this.sendInOrder(turn)).finally(() => { this.pending-- })
  }

  /**
   * Events of one topic each, all at once: on one Redis one call for every log (per
   * CALL_EVENTS and CALL_LOGS), on a Redis Cluster one call per log; one connection keeps
   * a log's calls in order. Resolves when all are answered.
   */
  private async sendSingles (events: Pending[]): Promise<void> {
    const byLog = new Map<string, Pending[]>()
    for (const p of events) {
      const log = p.event.topics?.[0] ?? BROADCAST
      let list = byLog.get(log)
      if (list === undefined) byLog.set(log, list = [])
      list.push(p)
    }
    const together = !('nodes' in this.pub)
    const calls: Array<{ groups: Array<{ log: string, part: Pending[] }>, events: number }> = []
    let call: typeof calls[number] | null = null
    for (const [log, list] of byLog) {
      for (let from = 0; from < list.length; from += CALL_EVENTS) {
        const part = list.slice(from, from + CALL_EVENTS)
        if (call === null || !together || call.events + part.length > CALL_EVENTS || call.groups.length === CALL_LOGS) calls.push(call = { groups: [], events: 0 })
        call.groups.push({ log, part })
        call.events += part.length
      }
    }
    const parts = calls.map(({ groups }) => groups.map(({ log, part }) => ({ log, part: part.map(p => ({ event: p.event, uid: '', priors: '' })) })))
    // Several calls (a Redis Cluster's logs, or a batch over CALL_EVENTS / CALL_LOGS): those
    // that can go at once leave together, one write per master; a log's calls all go one way.
    const now = calls.length === 1 ? [null] : this.together(() => parts.map(p => { const c = this.callNow(p, ''); return c === null ? null : this.sendCall(c) }))
    await Promise.all(calls.map(async ({ groups }, c) => {
      const outcomes = await (now[c] ?? this.sendLogs(parts[c], ''))
        .catch((err: Error) => groups.map(() => err))
      groups.forEach(({ part }, g) => {
        const ids = outcomes[g]
        for (let i = 0; i < part.length; i++) {
          if (ids instanceof Error) settle(part[i], null, ids, [])
          else settle(part[i], ids[i], null)
        }
      })
    }))
  }

  private async sendInOrder (turn: Pending[]): Promise<void> {
    let run: Pending[] = []
    const flushRun = async (): Promise<void> => {
      const part = run
      run = []
      if (part.length > 0) await this.sendSingles(part)
    }
    for (const p of turn) {
      const topics = p.event.topics
      if (topics === null || topics.length === 1) {
        run.push(p)
        continue
      }
      await flushRun()
      try {
        settle(p, await this.sendCopies(p.event, ''), null)
      } catch (err) {
        const failed = err as CopiesFailed
        const first = failed.written.indexOf(topics[0])
        settle(p, first === -1 ? null : failed.positions[first], failed.reason, failed.written)
      }
    }
    await flushRun()
  }

  /**
   * The copies of an event of several topics, in their logs' order; its position in its
   * first topic. `done` (its uid and the positions written so far) lets a retry go on
   * from the copy that failed rather than write the first ones again.
   */
  private async sendCopies (event: Outgoing, origin: string, done = { uid: `${this.uidStem}.${(this.uidCount++).toString(36)}`, positions: [] as string[] }): Promise<string> {
    const { uid, positions } = done
    const sorted = [...event.topics!].sort()
    for (const log of sorted.slice(positions.length)) {
      try {
        const [id] = await this.send(log, [{ event, uid, priors: positions.join(',') }], origin)
        positions.push(id)
      } catch (err) {
        throw new CopiesFailed(sorted.slice(0, positions.length), positions, err as Error)
      }
    }
    return positions[sorted.indexOf(event.topics![0])]
  }

  private async send (log: string, part: Parts, origin: string): Promise<string[]> {
    const [outcome] = await this.sendLogs([{ log, part }], origin)
    if (outcome instanceof Error) throw outcome
    return outcome
  }

  /**
   * One script call for the logs' events (several logs on one Redis only): per log, its
   * positions, or why it was not published (Redis refused that log: its appends were taken
   * back, the other logs' stand). Throws when no log was.
   */
  private async sendLogs (groups: Array<{ log: string, part: Parts }>, origin: string): Promise<Array<string[] | Error>> {
    const started = performance.now()
    const keys = groups.map(({ log }) => logKey(this.opts.prefix, log))
    const master = await this.masterConnected(keys[0])
    // Its deadline in the master's clock, as its last reply showed it; for a master not heard
    // from yet, another master's (clocks kept by NTP agree to well under LATE_MS); when none
    // is known, or after a LATE refusal showed it wrong, that master's clock read first.
    let offset = this.offsetOf(master)
    if (master !== '' && !known(offset)) offset = await this.readClock(keys[0], master)
    return await this.sendCall(this.call(groups, keys, master, offset, origin, started))
  }

  /**
   * The call for the logs' events when it can go at once: its master connected and its
   * clock known (as sendLogs would find them, without waiting); else null.
   */
  private callNow (groups: Array<{ log: string, part: Parts }>, origin: string): Call | null {
    const started = performance.now()
    const keys = groups.map(({ log }) => logKey(this.opts.prefix, log))
    const master = this.masterReady(keys[0])
    if (master === null) return null
    const offset = this.offsetOf(master)
    if (master !== '' && !known(offset)) return null
    return this.call(groups, keys, master, offset, origin, started)
  }

  private offsetOf (master: string): number | undefined {
    return master === '' ? undefined : this.offsets.get(master) ?? this.anyOffset()
  }

  private call (groups: Array<{ log: string, part: Parts }>, keys: string[], master: string, offset: number | undefined, origin: string, started: number): Call {
    const deadline = known(offset) ? Math.ceil(clockMs() + offset + LATE_MS) : ''
    const tag = `${this.uidStem}:${(this.calls++).toString(36)}`
    return { groups, keys, master, deadline, tag, packs: groups.map(({ part }) => pack(part, origin)), started }
  }

  /**
   * Sends the call (its command is written, or queued by ioredis, before this returns its
   * promise) and reads the reply: per log, its positions or why it was not published.
   */
  private async sendCall ({ groups, keys, master, deadline, tag, packs, started }: Call): Promise<Array<string[] | Error>> {
    const { historySize, historyTtlMs } = this.opts
    let reply: string[]
    const sentAt = performance.now()
    try {
      reply = keys.length === 1
        ? await this.pub.ssePublish(keys[0], historySize, historyTtlMs, packs[0], deadline, tag)
        : await this.pub.ssePublishLogs(keys.length, ...keys, historySize, historyTtlMs, packs[0], deadline, tag, ...packs.slice(1))
    } catch (err) {
      const message = (err as Error).message
      // Late: the master's clock is not what its last reply (or another master's) showed: it
      // stepped, or a failover put another clock there. The next call reads it first.
      if (message.startsWith('LATE ')) this.offsets.set(master, NaN)
      if (NOT_SENT.test(message) || message.startsWith('LATE ')) throw new NotPublishedError(err as Error)
      // Sent, and no answer (the connection closed, the command timed out): it may have
      // run. Find out from each log, once the deadline has passed.
      if (err instanceof ReplyError || deadline === '') throw err
      const outcomes: Array<string[] | Error> = []
      for (let g = 0; g < keys.length; g++) {
        outcomes.push(await this.settle(keys[g], deadline, tag, groups[g].part.length, err as Error, sentAt).catch((e: Error) => e))
      }
      if (outcomes.every(o => o instanceof Error)) throw outcomes[0]
      this.opts.answered?.('publish', performance.now() - started)
      return outcomes
    }
    // All published (the positions of every log, in order), or 'partial': per log, its
    // positions or what Redis refused it with.
    const outcomes: Array<string[] | Error> = []
    if (reply[0] === 'partial') {
      for (const item of reply.slice(1) as Array<string | string[]>) outcomes.push(typeof item === 'string' ? new NotPublishedError(new Error(item)) : item)
    } else {
      let at = 0
      for (const { part } of groups) outcomes.push(reply.slice(at, at += part.length))
    }
    // Its master's clock, as its entries' positions show it (never ahead of it).
    const newest = (reply[0] === 'partial' ? outcomes.flatMap(o => o instanceof Error ? [] : o) : reply).at(-1)
    if (master !== '' && newest !== undefined) this.offsets.set(master, idMillis(newest) - clockMs())
    this.opts.answered?.('publish', performance.now() - started)
    return outcomes
  }

  /**
   * The clock offset of the master of `key`, read with one round trip; undefined when it
   * cannot be read now (the call goes without a deadline, as it would have).
   */
  private async readClock (key: string, master: string): Promise<number | undefined> {
    let read = this.clockReads.get(master)
    if (read === undefined) {
      read = this.pub.sseClock(key).then(([s, us]) => {
        const offset = Number(s) * 1000 + Math.floor(Number(us) / 1000) - clockMs()
        this.offsets.set(master, offset)
        return offset
      }, () => undefined).finally(() => this.clockReads.delete(master))
      this.clockReads.set(master, read)
    }
    return await read
  }

  /** A master's clock offset, for one not heard from yet (undefined when none is known). */
  private anyOffset (): number | undefined {
    for (const offset of this.offsets.values()) if (!Number.isNaN(offset)) return offset
    return undefined
  }

  /**
   * A publish call whose reply was lost: once its master's clock is past its deadline, it
   * can no longer write, and its tag in the log says whether it did (its positions) or not
   * (NotPublishedError). `cause` when that cannot be told within SETTLE_MS of the deadline, or at all.
   */
  private async settle (key: string, deadline: number, tag: string, count: number, cause: Error, sentAt: number): Promise<string[]> {
    const giveUp = sentAt + LATE_MS + SETTLE_MS
    for (let failures = 0; !this.closing && performance.now() < giveUp;) {
      let reply: Array<string | number>
      try {
        await this.masterConnected(key)
        reply = await this.pub.sseSettle(key, deadline, tag, Math.ceil(performance.now() - sentAt), this.opts.historyTtlMs, this.opts.historySize)
      } catch {
        // Not connected yet, or again: try again shortly.
        await new Promise(resolve => setTimeout(resolve, backoffMs(failures++)).unref())
        continue
      }
      if (reply[0] === 'wait') {
        await new Promise(resolve => setTimeout(resolve, Math.min(Number(reply[1]), 1000)).unref())
        continue
      }
      if (reply[0] !== 'written') break
      const ids = reply.slice(1).map(String)
      if (ids.length === count) return ids
      if (ids.length === 0) throw new NotPublishedError(cause)
      break
    }
    throw cause
  }

  /** The key's master when its connection is ready now (as masterConnected would return it at once); else null. */
  private masterReady (key: string): string | null {
    const owner = this.ownerOf(key)
    if (!('nodes' in this.pub) || owner === '') return owner
    return this.masterNode(this.pub, owner)?.status === 'ready' ? owner : null
  }

  private masterNode (cluster: Cluster, owner: string): Redis | undefined {
    return cluster.nodes('master').find(n => `${n.options.host}:${n.options.port}` === owner)
  }

  /**
   * Runs `send` with the ready publishing connections corked: the calls it makes leave in
   * one write per connection (one writev), not one write each.
   */
  private together<T> (send: () => T): T {
    const streams = ('nodes' in this.pub ? this.pub.nodes('master') : [this.pub]).flatMap(r => r.status === 'ready' ? [r.stream] : [])
    for (const stream of streams) stream.cork()
    try {
      return send()
    } finally {
      for (const stream of streams) stream.uncork()
    }
  }

  /**
   * A cluster connects to a master at its first command, and fails a command sent while
   * that connection is still being made as if it had been lost: wait for it instead.
   * Returns the key's master ('redis' for a standalone one; '' when no slot map has it).
   */
  private async masterConnected (key: string): Promise<string> {
    const owner = this.ownerOf(key)
    if (!('nodes' in this.pub) || owner === '') return owner
    const cluster = this.pub
    const find = (): Redis | undefined => this.masterNode(cluster, owner)
    let node = find()
    // Its connection ended and left the pool: a publish would go through a MOVED to a new
    // one, the same race. The slot map brings it back, not yet connected.
    if (node === undefined) {
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, 2000).unref()
        cluster.refreshSlotsCache(() => { clearTimeout(timer); resolve() })
      })
      node = find()
    }
    if (node === undefined || node.status === 'ready') return owner
    if (node.status === 'wait') node.connect().catch(() => {})
    if (node.status === 'end') return owner
    const connectingNode = node
    let connecting = this.connecting.get(connectingNode)
    if (connecting === undefined) {
      connecting = new Promise<void>(resolve => {
        const done = (): void => {
          clearTimeout(timer)
          connectingNode.off('ready', done).off('end', done)
          this.connecting.delete(connectingNode)
          resolve()
        }
        const timer = setTimeout(done, connectingNode.options.connectTimeout ?? 2000).unref()
        connectingNode.on('ready', done).on('end', done)
      })
      this.connecting.set(connectingNode, connecting)
    }
    await connecting
    return owner
  }

  private readonly connecting = new WeakMap<Redis, Promise<void>>()

  /** The key's master as the slot map has it: 'redis' for a standalone one, '' when none has it. */
  private ownerOf (key: string): string {
    if (!('nodes' in this.pub)) return 'redis'
    return this.pub.slots[calculateSlot(key)]?.[0] ?? ''
  }

  private async read (log: string, after: string, mode: 'read' | 'head' | 'since' | 'catch-up'): Promise<HistoryReply> {
    this.historyReads++
    const started = performance.now()
    const reply = await this.reader.sseHistory(logKey(this.opts.prefix, log), after, mode)
    this.opts.answered?.('history', performance.now() - started)
    return parseHistory(log, reply)
  }

  // Redis down: deliver here now (no id: nothing to resume from) and keep the event for
  // the other instances, published when Redis is back.
  private publishLocal (events: Outgoing[]): PublishResult {
    if (this.opts.rejectWhenDegraded && this.trouble !== null) throw new DegradedError(undefined, this.trouble)
    if (this.outbox.length + events.length > this.opts.outboxLimit) throw new DegradedError(this.opts.outboxLimit)
    const acceptedAt = performance.now()
    for (const e of events) {
      this.outbox.push(e)
      const body = Buffer.from(e.body)
      const logs = e.topics ?? [BROADCAST]
      const uid = logs.length > 1 ? `${this.uidStem}.${(this.uidCount++).toString(36)}` : null
      for (const log of logs) this.opts.listener.deliver({ log, position: null, uid, topics: e.topics, body, priors: null, acceptedAt })
    }
    this.drainOutbox()
    return { ids: events.map(() => null), fanout: 'local' }
  }

  private drainOutbox (): void {
    if (this.draining || this.outbox.length === 0 || this.pub.status !== 'ready' || this.problem !== null) return
    this.draining = true
    this.drain().then(() => {
      this.drainFailures = 0
      this.drainError = null
    }, err => {
      this.drainError = (err as Error).message
      if (Date.now() - this.drainLogged > 10_000) {
        this.drainLogged = Date.now()
        this.opts.onError(err, `outbox publish (${this.outbox.length} events waiting; retrying)`)
      }
      if (REFUSAL.test((err as Error).message)) this.scheduleProofSoon()
      // A cluster stays 'ready' while one master is out of reach: no 'ready' would retry.
      if (this.drainRetry === null && !this.closing) {
        this.drainRetry = setTimeout(() => {
          this.drainRetry = null
          this.drainOutbox()
        }, backoffMs(this.drainFailures++)).unref()
      }
    }).finally(() => { this.draining = false })
  }

  private async drain (): Promise<void> {
    while (this.outbox.length > 0 && this.pub.status === 'ready') {
      const event = this.outbox[0]
      if (event.topics !== null && event.topics.length > 1) {
        let done = this.outboxCopies.get(event)
        if (done === undefined) this.outboxCopies.set(event, done = { uid: `${this.uidStem}.${(this.uidCount++).toString(36)}`, positions: [] })
        await this.sendCopies(event, this.opts.instanceId, done)
      } else await this.send(event.topics?.[0] ?? BROADCAST, [{ event, uid: '', priors: '' }], this.opts.instanceId)
      this.outbox.shift()
    }
  }

  private onMessage (channel: Buffer, message: Buffer): void {
    const log = keyLog(this.opts.prefix, channel.toString())
    if (log === null) return
    if (log.startsWith('*probe:')) {
      if (log === `*probe:${this.opts.instanceId}`) this.probeArrived?.()
      return
    }
    const w = this.watches.get(log)
    if (w === undefined) return
    if (w.held !== null) {
      w.held.push(message)
      return
    }
    this.deliverMessage(log, message)
  }

  // Records come in the log's order, but a history read on the other connection may have
  // covered them already (held while it was under way, or its reply overtook them). Any
  // other record at or before the head means the log went back (Redis lost it, and its
  // clock is behind): its readers must resume and be told.
  private deliverMessage (log: string, message: Buffer): void {
    const reader = this.records
    const listener = this.opts.listener
    const w = this.watches.get(log)
    const clock = new ArrivalClock()
    reader.reset(message)
    while (reader.next()) {
      const head = listener.head(log)
      if (head !== null && compareIds(reader.position, head) <= 0) {
        if (w !== undefined && w.covered !== null && compareIds(reader.position, w.covered) <= 0) continue
        listener.lost(log)
        listener.ready(log, reader.position)
        continue
      }
      if (w !== undefined) w.covered = null
      // Delivered here already, without an id, during the outage it was published in.
      if (reader.origin === this.opts.instanceId) listener.advance(log, reader.position)
      else listener.deliver({ log, position: reader.position, uid: reader.uid, topics: reader.topics, body: reader.body, priors: reader.priors, acceptedAt: clock.appendedAt(reader.position) })
    }
  }

  // Subscribe first, then read the head: a message published in between is held, and
  // dropped if the head already covers it (resumes read history after it: untilLive).
  private async subscribe (log: string): Promise<void> {
    const w = this.watches.get(log)
    if (w === undefined || this.closing) return
    const generation = ++w.generation
    w.held ??= []
    const sub = this.opts.sub as Redis
    if (sub.status !== 'ready' || this.pub.status !== 'ready' || this.reader.status !== 'ready') return // 'ready' subscribes again
    await sub.ssubscribe(logKey(this.opts.prefix, log))
    const since = w.since
    const reply = await this.read(log, since ?? '', since === null ? 'head' : 'since')
    if (w !== this.watches.get(log) || generation !== w.generation) return
    w.subscribed = true
    w.since = null
    if (since === null) {
      this.opts.listener.ready(log, reply.last)
    } else {
      this.deliverHistory(log, reply)
      this.opts.listener.ready(log, undefined)
    }
    this.release(log, w, reply.last)
  }

  private deliverHistory (log: string, reply: HistoryReply): void {
    const listener = this.opts.listener
    const clock = new ArrivalClock()
    for (const d of reply.events) {
      const head = listener.head(log)
      if (head !== null && compareIds(d.position!, head) <= 0) continue
      if (d.origin === this.opts.instanceId) {
        listener.advance(log, d.position!)
        continue
      }
      this.replayed++
      d.acceptedAt = clock.appendedAt(d.position!)
      listener.deliver(d)
    }
  }

  /** Goes live after a read that saw the log up to `covered`: held messages follow. */
  private release (log: string, w: Watch, covered: string | null): void {
    const held = w.held ?? []
    w.held = null
    w.covered = covered
    for (const message of held) this.deliverMessage(log, message)
    const reads = w.reads
    w.reads = null
    if (reads !== null) for (const go of reads) go()
  }

  private resubscribeAll (): void {
    if (this.closing || this.opts.sub.status !== 'ready' || this.pub.status !== 'ready' || this.reader.status !== 'ready') return
    for (const log of this.watches.keys()) this.refresh(log, 0)
  }

  /**
   * (Re)subscribes to a log and catches it up, again after a failure (a slot that moved
   * answers MOVED until the subscriber knows its new master) for as long as it is watched:
   * until one succeeds its live messages are held, and a log left held would stall.
   */
  private refresh (log: string, failures: number): void {
    const w = this.watches.get(log)
    if (w === undefined || this.closing) return
    const attempt = w.subscribed ? this.catchUp(log) : this.subscribe(log)
    const generation = w.generation
    attempt.catch(err => {
      // One line per 10 s at most: a failover fails the catch-up of every log at once.
      if (Date.now() - this.retryLogged > 10_000) {
        this.retryLogged = Date.now()
        this.opts.onError(err, `subscription to ${log} (and maybe others; retrying)`)
      }
      setTimeout(() => {
        if (this.watches.get(log) === w && w.generation === generation) this.refresh(log, failures + 1)
      }, backoffMs(failures)).unref()
    })
  }

  // (Re)connected: (re)subscribe (a cluster's sharded subscribers did already: again is
  // harmless), then fetch from history what was published while away, holding live
  // messages until it is delivered.
  private async catchUp (log: string): Promise<void> {
    const w = this.watches.get(log)
    if (w === undefined || this.closing) return
    const generation = ++w.generation
    w.held ??= []
    const sub = this.opts.sub as Redis
    await sub.ssubscribe(logKey(this.opts.prefix, log))
    const listener = this.opts.listener
    const reply = await this.read(log, listener.head(log) ?? '', 'catch-up')
    if (w !== this.watches.get(log) || generation !== w.generation) return
    if (reply.gap) {
      listener.ready(log, reply.last)
      listener.lost(log)
    } else {
      this.deliverHistory(log, reply)
      listener.ready(log, undefined)
    }
    this.release(log, w, reply.last)
  }
}

/**
 * When Redis appended events that arrive now, in performance.now() time: their ids carry
 * Redis's clock in ms (the same as this host's on one machine); never later than their arrival.
 */
class ArrivalClock {
  private readonly now = performance.now()
  private readonly wall = Date.now()

  appendedAt (position: string): number {
    return this.now - Math.max(0, this.wall - idMillis(position))
  }
}

/**
 * One event's outcome (`reached`: the logs it got to, when it failed); the last of its
 * publish settles the whole: all published, some (which, per event), or none.
 */
function settle (p: Pending, id: string | null, err: Error | null, reached?: string[]): void {
  const w = p.waiter
  w.ids[p.index] = id
  if (err !== null) {
    w.failed = err
    ;(w.reached ??= new Map()).set(p.index, reached ?? [])
  }
  if (--w.left > 0) return
  if (w.failed === null) return w.resolve(w.ids)
  const published = w.events.map((e, i) => w.reached!.get(i) ?? e.topics ?? [BROADCAST])
  if (published.every(logs => logs.length === 0)) return w.reject(w.failed)
  const unpublished = w.events.map((e, i) => (e.topics ?? [BROADCAST]).filter(log => !published[i].includes(log)))
  w.reject(new PartialPublishError(w.ids, published, unpublished, w.failed))
}
