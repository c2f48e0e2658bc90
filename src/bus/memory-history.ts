// Bounded per-topic history in memory, for single-instance mode. Same semantics as
// the Redis Streams history: at most `size` events per topic, none older than `ttlMs`.
import { compareIds, idMillis } from '../event-id.js'
import { encodeFrame } from '../frame.js'
import type { HistoryResult } from './bus.js'

interface Entry { id: string, topics: string[] | null, body: string }

interface TopicLog {
  entries: Entry[]
  /** Newest id that was trimmed away; resuming from before it has a gap. */
  maxDeleted: string | null
  lastAdded: number
}

export const BROADCAST_LOG = ''

export class MemoryHistory {
  private readonly logs = new Map<string, TopicLog>()
  private readonly size: number
  private readonly ttlMs: number
  lastId: string | null = null

  constructor (size: number, ttlMs: number) {
    this.size = size
    this.ttlMs = ttlMs
  }

  append (id: string, topics: string[] | null, body: string, now = Date.now()): void {
    const entry = { id, topics, body }
    for (const name of topics ?? [BROADCAST_LOG]) {
      let log = this.logs.get(name)
      if (log === undefined) {
        log = { entries: [], maxDeleted: null, lastAdded: now }
        this.logs.set(name, log)
      }
      log.entries.push(entry)
      log.lastAdded = now
      if (log.entries.length > this.size) log.maxDeleted = log.entries.shift()!.id
      this.expire(log, now)
    }
    this.lastId = id
  }

  /** Events of `topics` (and broadcasts) after `after`, in order, once each. */
  read (topics: string[], after: string, now = Date.now()): HistoryResult {
    if (this.lastId === null || compareIds(after, this.lastId) > 0) return { gap: true, events: [], last: this.lastId }
    if (compareIds(after, this.lastId) === 0) return { gap: false, events: [], last: this.lastId }
    let gap = false
    const seen = new Map<string, Entry>()
    for (const name of [BROADCAST_LOG, ...topics]) {
      const log = this.logs.get(name)
      if (log === undefined) continue
      this.expire(log, now)
      if (log.maxDeleted !== null && compareIds(log.maxDeleted, after) > 0) gap = true
      for (const entry of log.entries) {
        if (compareIds(entry.id, after) > 0) seen.set(entry.id, entry)
      }
    }
    // A topic log dropped whole for age may have held events after `after`.
    if (this.ttlMs > 0 && idMillis(after) < now - this.ttlMs) gap = true
    const events = [...seen.values()].sort((a, b) => compareIds(a.id, b.id))
    return {
      gap,
      last: this.lastId,
      events: events.map(e => ({ id: e.id, topics: e.topics, frame: encodeFrame(e.id, e.body) }))
    }
  }

  /** Drops entries past their age, and logs idle for longer than the age. */
  sweep (now = Date.now()): void {
    for (const [name, log] of this.logs) {
      this.expire(log, now)
      if (log.entries.length === 0 && this.ttlMs > 0 && log.lastAdded < now - this.ttlMs) this.logs.delete(name)
    }
  }

  private expire (log: TopicLog, now: number): void {
    if (this.ttlMs <= 0) return
    const cutoff = now - this.ttlMs
    while (log.entries.length > 0 && idMillis(log.entries[0].id) < cutoff) {
      log.maxDeleted = log.entries.shift()!.id
    }
  }
}
