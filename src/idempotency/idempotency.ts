// Idempotent publishing (POST /notify with an Idempotency-Key): the first request with a
// key claims it in a store every instance shares, publishes, and keeps its answer there;
// a retry within the window gets that answer and publishes nothing, on any instance. A
// refusal that published nothing frees the key; one that may have published keeps it.
// The store is this instance's memory (memory-store.ts) or Redis (redis-store.ts).
import { createHash, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Outgoing } from '../bus/bus.js'
import { errorBody } from '../refusal.js'

/** One record per key, claimed atomically: what every instance must agree on. */
export interface IdempotencyStore {
  /** Sets `key` to `record` for `ttlMs` unless it holds one: null when it was set now, else the record it holds. */
  claim (key: string, record: string, ttlMs: number): Promise<string | null>
  /** Sets `key` to `next` (null: deletes it), keeping its expiry, if it still holds `expected`; false when it did not. */
  replace (key: string, expected: string, next: string | null): Promise<boolean>
}

/** An answer to a publish, as the route sends it. */
export interface Answer {
  statusCode: number
  body: unknown
  /**
   * A refusal: nothing was published (the key is freed), something may have been (it
   * stays taken), or part was, as the answer says (it is kept as the answer to retries).
   */
  sent?: 'nothing' | 'unknown' | 'partial'
  retryAfter?: string
  /** The answer an earlier request with the same key got. */
  replayed?: boolean
}

/** What a key holds: a request under way, its answer, or a publish whose outcome is unknown. */
type KeyRecord =
  | { state: 'pending', fingerprint: string, token: string, since: number }
  | { state: 'done', fingerprint: string, statusCode: number, body: unknown }
  | { state: 'unknown', fingerprint: string, since: number, message: string }

/** An Idempotency-Key: 1-128 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/

/** Why an Idempotency-Key header is refused, null when it is fine. */
export function checkIdempotencyKey (value: string | string[]): string | null {
  return typeof value === 'string' && IDEMPOTENCY_KEY.test(value)
    ? null
    : 'the Idempotency-Key header must be 1-128 visible ASCII characters (no spaces), once'
}

/** A digest of what a request publishes: a retry must publish the same, or it is a new request. */
export function fingerprint (single: boolean, events: Outgoing[]): string {
  const hash = createHash('sha256').update(single ? '1' : 'n')
  // Topic names have no ',' or '\n'; the body's length delimits it.
  for (const e of events) hash.update(`\n${e.topics === null ? '*' : e.topics.join(',')}\n${Buffer.byteLength(e.body)}\n`).update(e.body)
  return hash.digest('base64url')
}

export interface IdempotencyOptions {
  store: IdempotencyStore
  /** How long a key is remembered from its first request. */
  windowMs: number
  /** How long a retry waits for a request under way with its key before 409 (default 5 s). */
  waitMs?: number
  /** How often it looks meanwhile (default 50 ms). */
  pollMs?: number
  /** The store failed after the publish (the key is then left pending). */
  onError: (err: Error, what: string) => void
}

/** A request under way longer than this did not just get slow: its instance stopped or lost Redis. */
const ABANDONED_MS = 30000

const ageS = (since: number): number => Math.max(0, Math.round((Date.now() - since) / 1000))

export class Idempotency {
  private readonly opts: Required<IdempotencyOptions>

  constructor (opts: IdempotencyOptions) {
    this.opts = { waitMs: 5000, pollMs: 50, ...opts }
  }

  /** `publish` once per key within the window: its answer, or the first one's. */
  async run (key: string, digest: string, publish: () => Promise<Answer>): Promise<Answer> {
    const { store, windowMs, waitMs, pollMs } = this.opts
    const mine = JSON.stringify({ state: 'pending', fingerprint: digest, token: randomUUID(), since: Date.now() } satisfies KeyRecord)
    const deadline = Date.now() + waitMs
    for (;;) {
      let held: string | null
      try {
        held = await store.claim(key, mine, windowMs)
      } catch (err) {
        return refusal(503, `the Idempotency-Key cannot be checked (${(err as Error).message}): nothing was published, retry later`, '1')
      }
      if (held === null) break
      const record = JSON.parse(held) as KeyRecord
      if (record.fingerprint !== digest) {
        return refusal(422, 'this Idempotency-Key was used for a request with a different body: a new request needs a new key')
      }
      if (record.state === 'done') return { statusCode: record.statusCode, body: record.body, replayed: true }
      if (record.state === 'unknown') {
        return refusal(409, `a request with this Idempotency-Key failed ${ageS(record.since)} s ago while publishing (${record.message}): its events may or may not have been sent, so this request published nothing; use a new key to publish anyway`)
      }
      if (Date.now() - record.since > ABANDONED_MS) {
        return refusal(409, `a request with this Idempotency-Key started ${ageS(record.since)} s ago and never answered (its instance stopped or lost Redis): its events may or may not have been sent, so this request published nothing; use a new key to publish anyway`)
      }
      if (Date.now() >= deadline) {
        return refusal(409, `a request with this Idempotency-Key is in progress (started ${ageS(record.since)} s ago): nothing was published, retry later`, '1')
      }
      await sleep(pollMs)
    }
    let answer: Answer
    try {
      answer = await publish()
    } catch (err) {
      await this.settle(key, mine, unknown(digest, (err as Error).message))
      throw err
    }
    if ((answer.statusCode >= 200 && answer.statusCode < 300) || answer.sent === 'partial') {
      await this.settle(key, mine, JSON.stringify({ state: 'done', fingerprint: digest, statusCode: answer.statusCode, body: answer.body } satisfies KeyRecord))
    } else if (answer.sent === 'unknown') {
      const body = answer.body as { message?: unknown }
      await this.settle(key, mine, unknown(digest, typeof body.message === 'string' ? body.message : `answered ${answer.statusCode}`))
    } else {
      await this.settle(key, mine, null)
    }
    return answer
  }

  // After the publish: a failing store leaves the key pending, so retries publish nothing.
  private async settle (key: string, mine: string, next: string | null): Promise<void> {
    try {
      await this.opts.store.replace(key, mine, next)
    } catch (err) {
      this.opts.onError(err as Error, next === null ? 'freeing an Idempotency-Key' : 'storing the answer of an Idempotency-Key')
    }
  }
}

function unknown (digest: string, message: string): string {
  return JSON.stringify({ state: 'unknown', fingerprint: digest, since: Date.now(), message } satisfies KeyRecord)
}

function refusal (statusCode: number, message: string, retryAfter?: string): Answer {
  return { statusCode, body: errorBody(statusCode, message), ...(retryAfter !== undefined && { retryAfter }) }
}
