// The cluster link seen from the routes and the hub: publish, read a log's history, and
// hand every event of the logs this instance reads to the hub, in each log's order.
// LocalBus is the single-instance backend, RedisBus the cluster one.
import type { Delivery } from '../hub.js'

/** One event to publish: `topics` null is a broadcast; `body` is from encodeBody. */
export interface Outgoing {
  topics: string[] | null
  body: string
}

export interface PublishResult {
  /** One per event: its position in its first topic's log; null when delivered on this instance only. */
  ids: Array<string | null>
  fanout: 'cluster' | 'local'
}

/** What history holds of one log after a position. */
export interface LogHistory {
  /** The events after it, in the log's order. */
  events: Delivery[]
  /** History cannot cover the position: events may be missing before `events`. */
  gap: boolean
  /** The newest position in the log (null: none): where a client told of a gap resumes from. */
  last: string | null
}

/** What the bus tells the hub. */
export interface BusListener {
  deliver: (d: Delivery) => void
  /** An event this instance delivered already (without an id, during an outage) got `position`. */
  advance: (log: string, position: string) => void
  /** This instance's newest position in `log`, null when it has none. */
  head: (log: string) => string | null
  /** Subscribed to `log`; `head` its newest position (null: empty; undefined: unchanged). */
  ready: (log: string, head: string | null | undefined) => void
  /** This instance missed events of `log` that history no longer has: its readers must resume. */
  lost: (log: string) => void
  /** Null, or when to answer a publish so that a sequential publisher keeps pace with the writes (Hub.paced). */
  paced?: () => Promise<void> | null
}

export interface Bus {
  readonly mode: 'single' | 'cluster'
  /** Events replayed from history to catch this instance up after an outage. */
  readonly replayed: number
  /** Events accepted during an outage, waiting to reach the other instances. */
  readonly queued: number
  /** History reads sent to the store. */
  readonly historyReads: number
  /** Why this instance cannot deliver cluster-wide now (null: it can, or it is alone). */
  readonly trouble: string | null
  publish (events: Outgoing[]): Promise<PublishResult>
  /**
   * `log` after `after`: a position, null (nothing seen: the log was empty when the reader
   * started), or undefined (a position that cannot be trusted: always a gap).
   */
  history (log: string, after: string | null | undefined): Promise<LogHistory>
  /** A log got its first local reader: subscribe, then tell the listener it is ready. */
  watch (log: string): void
  /** A log lost its last local reader. */
  unwatch (log: string): void
  close (): Promise<void>
}

/** Raised when Redis is configured but down and the service is set to refuse publishes. */
export class DegradedError extends Error {
  constructor (outboxLimit?: number, why = 'Redis is unreachable') {
    super(outboxLimit === undefined
      ? `${why} and PUBLISH_WHEN_DEGRADED=reject: retry later`
      : `${why} and ${outboxLimit} events already wait for it (OUTBOX_MAX_EVENTS): retry later`)
    this.name = 'DegradedError'
  }
}

/**
 * A publish that certainly wrote nothing: refused before it was sent, reached Redis after
 * its deadline, or, its reply lost, not found in the log once that deadline had passed.
 * A retry cannot deliver it twice.
 */
export class NotPublishedError extends Error {
  constructor (cause: Error) {
    super(cause.message.replace(/^LATE /, ''))
    this.name = 'NotPublishedError'
  }
}

/**
 * A publish that reached some of its logs and not others (an event of several topics on
 * masters one of which refused, a batch over several logs): per event, the id it got (its
 * position in its first topic, null when that one did not get it) and its topics ('*': a
 * broadcast) that got it and that did not, or may not have.
 */
export class PartialPublishError extends Error {
  readonly ids: Array<string | null>
  readonly published: string[][]
  readonly unpublished: string[][]

  constructor (ids: Array<string | null>, published: string[][], unpublished: string[][], cause: Error) {
    super(cause.message)
    this.name = 'PartialPublishError'
    this.ids = ids
    this.published = published
    this.unpublished = unpublished
  }
}
