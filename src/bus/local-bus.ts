// The single-instance bus: positions from the local clock, history in memory, delivery
// at once. An event of several topics is one entry in each topic's log, as with Redis.
// The answers of one event-loop turn's publishes go out together, a turn after its end:
// written in the turn that read the request, each one costs far more (see bench/RESULTS.md);
// under a fan-out they wait for the hub's pace.
import { BROADCAST } from '../cursor.js'
import { IdClock } from '../event-id.js'
import type { Delivery } from '../hub.js'
import type { Bus, BusListener, LogHistory, Outgoing, PublishResult } from './bus.js'
import { MemoryHistory } from './memory-history.js'

export interface LocalBusOptions {
  historySize: number
  historyTtlMs: number
  listener: BusListener
}

export class LocalBus implements Bus {
  readonly mode = 'single' as const
  readonly replayed = 0
  readonly queued = 0
  readonly trouble = null
  historyReads = 0
  private readonly clock = new IdClock()
  private readonly recent: MemoryHistory
  private readonly listener: BusListener
  private readonly sweeper: NodeJS.Timeout
  /**
   * Settles a turn after the turn's end, then, while the hub writes a fan-out, once it has
   * written a quarter of the clients it has queued (BusListener.paced); shared by the turn's
   * publishes. That paces a publisher that sends the next event after each answer to the
   * writes: each write carries a few events, not all that came during a pass over the
   * clients, so the pass stays short (bench/RESULTS.md: 10,000 clients, one publish in
   * flight, burst p99 1.36x -> 1.03x nchan's, deliveries/s 6.2x -> 2.6x, medians). With no
   * fan-out under way neither wait holds anything up.
   */
  private turnEnd: Promise<void> | null = null
  private readonly endTurn = (resolve: () => void): void => {
    setImmediate(() => {
      this.turnEnd = null
      setImmediate(() => {
        const paced = this.listener.paced?.() ?? null
        if (paced === null) resolve()
        else paced.then(resolve, resolve)
      })
    })
  }

  constructor (opts: LocalBusOptions) {
    this.recent = new MemoryHistory(opts.historySize, opts.historyTtlMs)
    this.listener = opts.listener
    this.sweeper = setInterval(() => this.recent.sweep(), 60_000).unref()
  }

  async publish (events: Outgoing[]): Promise<PublishResult> {
    const ids: string[] = []
    const acceptedAt = performance.now()
    for (const e of events) {
      const position = this.clock.next()
      const body = Buffer.from(e.body)
      ids.push(position)
      const logs = e.topics ?? [BROADCAST]
      if (logs.length === 1) {
        const d: Delivery = { log: logs[0], position, uid: null, topics: e.topics, body, priors: null, acceptedAt }
        this.recent.append(d)
        this.listener.deliver(d)
        continue
      }
      // One entry per topic, sharing a uid, each knowing how many of its topics sort before it.
      const sorted = [...logs].sort()
      for (const log of logs) {
        const priors = new Array<string>(sorted.indexOf(log)).fill(position).join(',')
        const d: Delivery = { log, position, uid: position, topics: e.topics, body, priors, acceptedAt }
        this.recent.append(d)
        this.listener.deliver(d)
      }
    }
    await (this.turnEnd ??= new Promise(this.endTurn))
    return { ids, fanout: 'local' }
  }

  async history (log: string, after: string | null | undefined): Promise<LogHistory> {
    this.historyReads++
    return this.recent.read(log, after)
  }

  watch (log: string): void {
    this.listener.ready(log, this.recent.last(log))
  }

  unwatch (): void {}

  async close (): Promise<void> {
    clearInterval(this.sweeper)
  }
}
