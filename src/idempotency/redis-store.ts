// The shared store: one Redis key per Idempotency-Key, claimed and replaced by a script
// each, so every instance (on one Redis or a Redis Cluster) sees the same record.
import type { Cluster, Redis } from 'ioredis'
import type { IdempotencyStore } from './idempotency.js'

// KEYS[1] the key's record. ARGV: the record, ttl ms. Sets it unless one is there, and
// returns the one there (nil: set now).
const CLAIM_SCRIPT = `
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`

// KEYS[1] the key's record. ARGV: the record it must hold, the next one ('': delete).
// Keeps the expiry, so the window counts from the first request. 1 if replaced, else 0.
const REPLACE_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end
return 1
`

interface StoreCommands {
  sseIdemClaim (key: string, record: string, ttlMs: number): Promise<string | null>
  sseIdemReplace (key: string, expected: string, next: string): Promise<number>
}

/**
 * The Redis key of an Idempotency-Key: its own hash tag (one key, one slot), and never
 * `<prefix>{...}`, which is a topic's log.
 */
export function idempotencyKey (prefix: string, key: string): string {
  return `${prefix}idem:{${key}}`
}

export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly redis: (Redis | Cluster) & StoreCommands
  private readonly prefix: string

  constructor (redis: Redis | Cluster, prefix: string) {
    this.redis = redis as (Redis | Cluster) & StoreCommands
    this.prefix = prefix
    redis.defineCommand('sseIdemClaim', { numberOfKeys: 1, lua: CLAIM_SCRIPT })
    redis.defineCommand('sseIdemReplace', { numberOfKeys: 1, lua: REPLACE_SCRIPT })
  }

  async claim (key: string, record: string, ttlMs: number): Promise<string | null> {
    return await this.redis.sseIdemClaim(idempotencyKey(this.prefix, key), record, ttlMs)
  }

  async replace (key: string, expected: string, next: string | null): Promise<boolean> {
    return await this.redis.sseIdemReplace(idempotencyKey(this.prefix, key), expected, next ?? '') === 1
  }
}
