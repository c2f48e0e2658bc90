// The single-instance bus: ids from the local clock, history in memory, delivery at once.
import { IdClock } from '../event-id.js'
import { encodeFrame } from '../frame.js'
import type { Delivery } from '../hub.js'
import type { Bus, HistoryResult, Outgoing, PublishResult } from './bus.js'
import { MemoryHistory } from './memory-history.js'

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
  private readonly recent: MemoryHistory
  private readonly deliver: (d: Delivery) => void
  private readonly sweeper: NodeJS.Timeout

  constructor (opts: LocalBusOptions) {
    this.recent = new MemoryHistory(opts.historySize, opts.historyTtlMs)
    this.deliver = opts.deliver
    this.sweeper = setInterval(() => this.recent.sweep(), 60_000).unref()
  }

  async publish (events: Outgoing[]): Promise<PublishResult> {
    const ids: string[] = []
    for (const e of events) {
      const id = this.clock.next()
      this.recent.append(id, e.topics, e.body)
      this.deliver({ id, topics: e.topics, frame: encodeFrame(id, e.body) })
      ids.push(id)
    }
    return { ids, fanout: 'local' }
  }

  async history (topics: string[], after: string): Promise<HistoryResult> {
    return this.recent.read(topics, after)
  }

  async close (): Promise<void> {
    clearInterval(this.sweeper)
  }
}
