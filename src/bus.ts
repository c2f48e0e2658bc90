// The cluster link seen from the routes: publish, replay history, and hand every event
// to the hub in one order. LocalBus is the single-instance version; RedisBus the cluster.
import { IdClock } from './event-id.js'
import { encodeFrame } from './frame.js'
import type { Delivery } from './hub.js'
import { MemoryHistory, type HistoryResult } from './memory-history.js'

export type { HistoryResult }

/** One event to publish: `topics` null is a broadcast; `body` is from encodeBody. */
export interface Outgoing {
  topics: string[] | null
  body: string
}

export interface PublishResult {
  /** One per event; null for an event delivered on this instance only (no id to resume from). */
  ids: Array<string | null>
  fanout: 'cluster' | 'local'
}

export interface Bus {
  readonly mode: 'single' | 'cluster'
  /** Events replayed from history to catch this instance up after an outage. */
  readonly replayed: number
  /** Events accepted during an outage, waiting to reach the other instances. */
  readonly queued: number
  publish (events: Outgoing[]): Promise<PublishResult>
  history (topics: string[], after: string): Promise<HistoryResult>
  close (): Promise<void>
}

/** Raised when Redis is configured but down and the service is set to refuse publishes. */
export class DegradedError extends Error {
  constructor (outboxLimit?: number) {
    super(outboxLimit === undefined
      ? 'Redis is unreachable and PUBLISH_WHEN_DEGRADED=reject: retry later'
      : `Redis is unreachable and ${outboxLimit} events already wait for it (OUTBOX_MAX_EVENTS): retry later`)
    this.name = 'DegradedError'
  }
}

export interface LocalBusOptions {
  historySize: number
  historyTtlMs: number
  deliver: (d: Delivery) => void
}

export class LocalBus implements Bus {
  readonly mode = 'single' as const
  readonly replayed = 0
  readonly queued = 0
  private readonly clock = new IdClock()
  private readonly log: MemoryHistory
  private readonly deliver: (d: Delivery) => void
  private readonly sweeper: NodeJS.Timeout

  constructor (opts: LocalBusOptions) {
    this.log = new MemoryHistory(opts.historySize, opts.historyTtlMs)
    this.deliver = opts.deliver
    this.sweeper = setInterval(() => this.log.sweep(), 60_000).unref()
  }

  async publish (events: Outgoing[]): Promise<PublishResult> {
    const ids: string[] = []
    for (const e of events) {
      const id = this.clock.next()
      this.log.append(id, e.topics, e.body)
      this.deliver({ id, topics: e.topics, frame: encodeFrame(id, e.body) })
      ids.push(id)
    }
    return { ids, fanout: 'local' }
  }

  async history (topics: string[], after: string): Promise<HistoryResult> {
    return this.log.read(topics, after)
  }

  async close (): Promise<void> {
    clearInterval(this.sweeper)
  }
}
