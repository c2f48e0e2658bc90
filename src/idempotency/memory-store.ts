// The single-instance store: records in a Map, bounded in size, expiring by themselves.
import type { IdempotencyStore } from './idempotency.js'

/** What one entry is taken to cost besides its key and record. */
const ENTRY_OVERHEAD = 100

interface Entry { record: string, expires: number }

export class MemoryIdempotencyStore implements IdempotencyStore {
  // In insertion order, which is expiry order while every claim has the same ttl.
  private readonly entries = new Map<string, Entry>()
  private readonly maxBytes: number
  private readonly now: () => number
  private used = 0

  /** Past `maxBytes` (counted as characters), the oldest keys are forgotten first. */
  constructor (maxBytes = 32 * 1024 * 1024, now: () => number = Date.now) {
    this.maxBytes = maxBytes
    this.now = now
  }

  get size (): number {
    return this.entries.size
  }

  get bytes (): number {
    return this.used
  }

  async claim (key: string, record: string, ttlMs: number): Promise<string | null> {
    const now = this.now()
    this.expire(now)
    const held = this.entries.get(key)
    if (held !== undefined) {
      if (held.expires > now) return held.record
      this.remove(key, held)
    }
    this.entries.set(key, { record, expires: now + ttlMs })
    this.used += cost(key, record)
    for (const [oldest, entry] of this.entries) {
      if (this.used <= this.maxBytes || oldest === key) break
      this.remove(oldest, entry)
    }
    return null
  }

  async replace (key: string, expected: string, next: string | null): Promise<boolean> {
    const held = this.entries.get(key)
    if (held === undefined || held.expires <= this.now() || held.record !== expected) return false
    if (next === null) {
      this.remove(key, held)
    } else {
      this.used += next.length - held.record.length
      held.record = next
    }
    return true
  }

  private expire (now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.expires > now) break
      this.remove(key, entry)
    }
  }

  private remove (key: string, entry: Entry): void {
    this.entries.delete(key)
    this.used -= cost(key, entry.record)
  }
}

function cost (key: string, record: string): number {
  return key.length + record.length + ENTRY_OVERHEAD
}
