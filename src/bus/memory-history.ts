// Bounded per-log history in memory, for single-instance mode. Same rules as the Redis
// history: at most `size` events per log, none older than `ttlMs`, and a position covers a
// resume only while it is still in its log (or was the last event trimmed from it).
import { compareIds, idMillis } from '../event-id.js'
import type { Delivery } from '../hub.js'
import type { LogHistory } from './bus.js'

interface Log {
  entries: Delivery[]
  /** Newest position trimmed away: a resume from before it has a gap. */
  maxDeleted: string | null
  lastAdded: number
}

export class MemoryHistory {
  private readonly logs = new Map<string, Log>()
  private readonly size: number
  private readonly ttlMs: number

  constructor (size: number, ttlMs: number) {
    this.size = size
    this.ttlMs = ttlMs
  }

  /** Appends `d` (with its position) to its log. */
  append (d: Delivery, now = Date.now()): void {
    let log = this.logs.get(d.log)
    if (log === undefined) {
      log = { entries: [], maxDeleted: null, lastAdded: now }
      this.logs.set(d.log, log)
    }
    log.entries.push(d)
    log.lastAdded = now
    if (log.entries.length > this.size) log.maxDeleted = log.entries.shift()!.position
    this.expire(log, now)
  }

  /** The newest position of `log`, null when it has none. */
  last (log: string): string | null {
    const entries = this.logs.get(log)?.entries
    return entries === undefined || entries.length === 0 ? (this.logs.get(log)?.maxDeleted ?? null) : entries[entries.length - 1].position
  }

  read (name: string, after: string | null | undefined, now = Date.now()): LogHistory {
    const log = this.logs.get(name)
    if (log !== undefined) this.expire(log, now)
    const last = this.last(name)
    if (after === undefined) return { events: [], gap: true, last }
    if (log === undefined) return { events: [], gap: after !== null, last }
    if (after === null) return { events: log.entries.slice(), gap: log.maxDeleted !== null, last }
    if (after === log.maxDeleted) return { events: log.entries.slice(), gap: false, last }
    const at = log.entries.findIndex(e => e.position === after)
    if (at !== -1) return { events: log.entries.slice(at + 1), gap: false, last }
    // Not in the log: trimmed away, or from a log that was lost; what remains after it follows the reset.
    return { events: log.entries.filter(e => compareIds(e.position!, after) > 0), gap: true, last }
  }

  /** Drops entries past their age, and logs idle for longer than the age. */
  sweep (now = Date.now()): void {
    for (const [name, log] of this.logs) {
      this.expire(log, now)
      if (log.entries.length === 0 && this.ttlMs > 0 && log.lastAdded < now - this.ttlMs) this.logs.delete(name)
    }
  }

  private expire (log: Log, now: number): void {
    if (this.ttlMs <= 0) return
    const cutoff = now - this.ttlMs
    while (log.entries.length > 0 && idMillis(log.entries[0].position!) < cutoff) {
      log.maxDeleted = log.entries.shift()!.position
    }
  }
}
