// The cluster link seen from the routes: publish, read history, and hand every event to
// the hub in one order. LocalBus is the single-instance backend, RedisBus the cluster one.
import type { Delivery } from '../hub.js'

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

export interface HistoryResult {
  events: Delivery[]
  /** Some event after the requested id is no longer in history (or the id is unknown). */
  gap: boolean
  /** Newest id in the whole history: where a client told of a gap resumes from. */
  last: string | null
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
