// The cluster bus. One Lua script gives each event an id, appends it to the history
// stream of each of its topics and publishes it, atomically: Redis runs scripts one at
// a time, so the publish order is the id order on every instance. Every instance, the
// publishing one included, delivers only what comes back through Pub/Sub, in that order.
import type { Redis } from 'ioredis'
import { DegradedError, type Bus, type HistoryResult, type Outgoing, type PublishResult } from './bus.js'
import { compareIds } from './event-id.js'
import { encodeFrame } from './frame.js'
import type { Delivery } from './hub.js'

const ID_HELPERS = `
local function parse (id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
local function gt (a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am > bm or (am == bm and as > bs)
end
local function now_ms ()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// KEYS[1] last id; ARGV: prefix, maxlen, ttl ms, channel, the events as pack() writes them.
// Topics are joined by ','; '' is a broadcast. Origin names the instance that already
// delivered the event itself during an outage ('' normally). Returns the ids. The whole
// batch goes out as one Pub/Sub message.
const PUBLISH_SCRIPT = ID_HELPERS + `
local prefix, maxlen, ttl, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local call = redis.call
local now = now_ms()
local ms, seq = 0, -1
local last = call('GET', KEYS[1])
if last then ms, seq = parse(last) end
-- Every id of one call shares its millisecond: now, or the last id's if the clock is behind.
if now > ms then ms, seq = now, -1 end
local stem = string.format('%d', ms) .. '-'
local ids, parts, keysof, touched = {}, {}, {}, {}
local n = 0
local packed, pos, find, sub = ARGV[5], 1, string.find, string.sub
while pos <= #packed do
  local a = find(packed, '\\n', pos, true)
  local b = find(packed, '\\n', a + 1, true)
  local c = find(packed, '\\n', b + 1, true)
  local topics, origin = sub(packed, pos, a - 1), sub(packed, a + 1, b - 1)
  local stop = c + tonumber(sub(packed, b + 1, c - 1))
  local body = sub(packed, c + 1, stop)
  pos = stop + 1
  seq = seq + 1
  local id = stem .. seq
  ids[#ids + 1] = id
  local keys = keysof[topics]
  if not keys then
    keys = {}
    if topics == '' then
      keys[1] = prefix .. 'b'
    else
      for topic in string.gmatch(topics, '[^,]+') do keys[#keys + 1] = prefix .. 't:' .. topic end
    end
    for k = 1, #keys do touched[keys[k]] = true end
    keysof[topics] = keys
  end
  for k = 1, #keys do
    call('XADD', keys[k], 'MAXLEN', maxlen, id, 't', topics, 'o', origin, 'b', body)
  end
  -- The record carries the finished SSE frame ("id: <id>\\n" + body), so receivers only
  -- take a view of it. The pieces are joined once, by table.concat, below.
  parts[n + 1] = id
  parts[n + 2] = '\\n'
  parts[n + 3] = topics
  parts[n + 4] = '\\n'
  parts[n + 5] = origin
  parts[n + 6] = '\\n'
  parts[n + 7] = #id + 5 + #body
  parts[n + 8] = '\\nid: '
  parts[n + 9] = id
  parts[n + 10] = '\\n'
  parts[n + 11] = body
  n = n + 11
end
if ttl > 0 then
  local cutoff = string.format('%d', now - ttl)
  for key in pairs(touched) do
    call('XTRIM', key, 'MINID', cutoff)
    call('PEXPIRE', key, ttl)
  end
end
call('SET', KEYS[1], ids[#ids])
call('PUBLISH', channel, table.concat(parts))
return ids
`

// KEYS[1] last id; ARGV: after id, ttl ms, unknown-is-gap 0/1, then stream keys.
// Returns { last id, gap 0/1, then id/topics/origin/body quads (unsorted, may repeat) }.
// A stream that lost entries (trimmed by size or age) covers a resume only from its
// first remaining entry on.
const HISTORY_SCRIPT = ID_HELPERS + `
local after, ttl, unknown_gap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local last = redis.call('GET', KEYS[1])
if not last then return { '', unknown_gap } end
if gt(after, last) then return { last, unknown_gap } end
if not gt(last, after) then return { last, 0 } end
local gap = 0
if ttl > 0 and parse(after) < now_ms() - ttl then gap = 1 end
local out = { last, 0 }
for i = 4, #ARGV do
  local key = ARGV[i]
  if redis.call('EXISTS', key) == 1 then
    local info = redis.call('XINFO', 'STREAM', key)
    local f = {}
    for j = 1, #info, 2 do f[info[j]] = info[j + 1] end
    if f['entries-added'] > f['length'] then
      local oldest = f['length'] > 0 and f['first-entry'][1] or f['last-generated-id']
      if gt(oldest, after) then gap = 1 end
    end
    for _, e in ipairs(redis.call('XRANGE', key, '(' .. after, '+')) do
      out[#out + 1] = e[1]
      out[#out + 1] = e[2][2]
      out[#out + 1] = e[2][4]
      out[#out + 1] = e[2][6]
    end
  end
end
out[2] = gap
return out
`

interface BusCommands {
  ssePublish (key: string, ...args: Array<string | number | Buffer>): Promise<string[]>
  sseHistory (key: string, ...args: Array<string | number>): Promise<Array<string | number>>
}

/** A history entry, with the instance that delivered it itself during an outage. */
interface Stored extends Delivery {
  id: string
  origin: string
}

export interface RedisBusOptions {
  pub: Redis
  sub: Redis
  prefix: string
  /** Tags the events this instance delivered itself while Redis was down. */
  instanceId: string
  historySize: number
  historyTtlMs: number
  /** Refuse publishes while Redis is down instead of delivering on this instance only. */
  rejectWhenDegraded: boolean
  /** Events accepted during an outage that wait for Redis; past it, publishes get 503. */
  outboxLimit: number
  deliver: (d: Delivery) => void
  /** Whether any local client would get an event of these topics (null: a broadcast). */
  wants: (topics: string[] | null) => boolean
  /** Topics with local clients: what to catch up on after an outage. */
  topics: () => string[]
  /** History no longer holds all that was missed: the clients must resume on their own. */
  onGap: () => void
  onError: (err: Error, what: string) => void
}

interface Batch {
  events: Outgoing[]
  waiters: Array<{ start: number, count: number, resolve: (ids: string[]) => void, reject: (err: Error) => void }>
}

/** Events per script call, past which a turn's publishes go out as several calls. */
const CALL_EVENTS = 256

/**
 * The events of one script call as one argument: "<topics>\n<origin>\n<body bytes>\n<body>"
 * each. One Buffer written once, rather than a string of thousands of pieces that the
 * socket write has to flatten and encode (13 % of the instance's CPU on batches).
 */
export function pack (events: Outgoing[], origin: string): Buffer {
  const heads = new Array<string>(events.length)
  const lengths = new Array<number>(events.length)
  let size = 0
  for (let i = 0; i < events.length; i++) {
    const e = events[i]
    lengths[i] = Buffer.byteLength(e.body)
    heads[i] = `${e.topics === null ? '' : e.topics.join(',')}\n${origin}\n${lengths[i]}\n`
    size += Buffer.byteLength(heads[i]) + lengths[i]
  }
  const buf = Buffer.allocUnsafe(size)
  let at = 0
  for (let i = 0; i < events.length; i++) {
    at += buf.write(heads[i], at)
    at += buf.write(events[i].body, at, lengths[i])
  }
  return buf
}

export class RedisBus implements Bus {
  readonly mode = 'cluster' as const
  private readonly opts: RedisBusOptions
  private readonly pub: Redis & BusCommands
  private readonly channel: string
  private readonly lastKey: string
  /** Id of the newest event handed to the hub; later ones only, after a catch-up. */
  private cursor: string | null = null
  /** Before the first event, catch up from the start: clients may have come first. */
  private readonly since = `${Date.now()}-0`
  /** Live messages held while catching up from history. */
  private held: Buffer[] | null = null
  /** Events delivered here during an outage, to be published once Redis is back. */
  private readonly outbox: Outgoing[] = []
  private flushing = false
  /** Publishes waiting for the end of this event-loop turn. */
  private batch: Batch | null = null
  /** Batches of this turn already full, sent with the last one. */
  private readonly full: Batch[] = []
  private generation = 0
  private closing = false
  replayed = 0

  constructor (opts: RedisBusOptions) {
    this.opts = opts
    this.pub = opts.pub as Redis & BusCommands
    this.channel = opts.prefix + 'events'
    this.lastKey = opts.prefix + 'last'
    this.pub.defineCommand('ssePublish', { numberOfKeys: 1, lua: PUBLISH_SCRIPT })
    this.pub.defineCommand('sseHistory', { numberOfKeys: 1, lua: HISTORY_SCRIPT })
    opts.sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.onMessage(message))
    opts.sub.on('ready', () => { this.onSubReady().catch(err => opts.onError(err, 'subscribe')) })
    opts.pub.on('ready', () => { this.flush() })
    if (opts.sub.status === 'ready') this.onSubReady().catch(err => opts.onError(err, 'subscribe'))
  }

  /** Events waiting for Redis to come back. */
  get queued (): number {
    return this.outbox.length
  }

  async publish (events: Outgoing[]): Promise<PublishResult> {
    // While the outbox drains, new events queue behind it to keep this instance's order.
    if (this.pub.status !== 'ready' || this.outbox.length > 0) return this.publishLocal(events)
    return { ids: await this.enqueue(events), fanout: 'cluster' }
  }

  // Publishes of one event-loop turn go to Redis as one script call: one round trip, one
  // Pub/Sub message for every instance to parse, whatever the number of publishers.
  private async enqueue (events: Outgoing[]): Promise<string[]> {
    return new Promise((resolve, reject) => {
      let batch = this.batch
      if (batch !== null && batch.events.length >= CALL_EVENTS) {
        this.full.push(batch)
        batch = null
      }
      if (batch === null) {
        if (this.full.length === 0) setImmediate(this.sendBatch)
        batch = { events: [], waiters: [] }
        this.batch = batch
      }
      batch.waiters.push({ start: batch.events.length, count: events.length, resolve, reject })
      for (const e of events) batch.events.push(e)
    })
  }

  // Several calls rather than one long one: Redis answers the first while the next runs,
  // so the replies (and the publishers' next requests) overlap Redis's work.
  private readonly sendBatch = (): void => {
    const batches = this.full.splice(0)
    if (this.batch !== null) batches.push(this.batch)
    this.batch = null
    for (const batch of batches) {
      this.send(batch.events, '').then(
        ids => { for (const w of batch.waiters) w.resolve(ids.slice(w.start, w.start + w.count)) },
        err => { for (const w of batch.waiters) w.reject(err) }
      )
    }
  }

  async history (topics: string[], after: string): Promise<HistoryResult> {
    return this.read(topics, after, true)
  }

  async close (): Promise<void> {
    this.closing = true
    if (this.opts.sub.status === 'ready') await this.opts.sub.unsubscribe(this.channel).catch(() => {})
    if (this.outbox.length > 0 && this.pub.status === 'ready' && !this.flushing) await this.drain().catch(() => {})
    if (this.outbox.length > 0) {
      this.opts.onError(new Error(`${this.outbox.length} events accepted during the outage never reached the other instances`), 'shutdown')
    }
  }

  private async send (events: Outgoing[], origin: string): Promise<string[]> {
    return this.pub.ssePublish(this.lastKey, this.opts.prefix, this.opts.historySize, this.opts.historyTtlMs, this.channel, pack(events, origin))
  }

  private async read (topics: string[], after: string, unknownIsGap: boolean): Promise<HistoryResult & { events: Stored[] }> {
    const keys = [this.opts.prefix + 'b']
    for (const t of topics) keys.push(this.opts.prefix + 't:' + t)
    const out = await this.pub.sseHistory(this.lastKey, after, this.opts.historyTtlMs, unknownIsGap ? 1 : 0, ...keys)
    const byId = new Map<string, Stored>()
    for (let i = 2; i < out.length; i += 4) {
      const id = String(out[i])
      if (byId.has(id)) continue
      const field = String(out[i + 1])
      const origin = String(out[i + 2])
      byId.set(id, { id, origin, topics: field === '' ? null : field.split(','), frame: encodeFrame(id, String(out[i + 3])) })
    }
    const events = [...byId.values()].sort((a, b) => compareIds(a.id, b.id))
    return { events, gap: out[1] === 1, last: out[0] === '' ? null : String(out[0]) }
  }

  // Redis down: deliver here now (no id: nothing to resume from) and keep the event for
  // the other instances, published when Redis is back.
  private publishLocal (events: Outgoing[]): PublishResult {
    if (this.opts.rejectWhenDegraded && this.pub.status !== 'ready') throw new DegradedError()
    if (this.outbox.length + events.length > this.opts.outboxLimit) throw new DegradedError(this.opts.outboxLimit)
    for (const e of events) {
      this.outbox.push(e)
      this.opts.deliver({ id: null, topics: e.topics, frame: encodeFrame(null, e.body) })
    }
    this.flush()
    return { ids: events.map(() => null), fanout: 'local' }
  }

  private flush (): void {
    if (this.flushing || this.outbox.length === 0 || this.pub.status !== 'ready') return
    this.flushing = true
    this.drain().catch(err => this.opts.onError(err, 'outbox publish')).finally(() => { this.flushing = false })
  }

  private async drain (): Promise<void> {
    while (this.outbox.length > 0 && this.pub.status === 'ready') {
      const batch = this.outbox.slice(0, 500)
      await this.send(batch, this.opts.instanceId)
      this.outbox.splice(0, batch.length)
    }
  }

  private onMessage (message: Buffer): void {
    if (this.held !== null) {
      this.held.push(message)
      return
    }
    this.deliverBatch(message, false)
  }

  // A message is records of "<id>\n<topics>\n<origin>\n<frame bytes>\n<frame>" (PUBLISH_SCRIPT).
  // Live messages come once each, in order: only those held during a catch-up can repeat
  // what it fetched, so only they are checked against the cursor. (Were the ids ever to go
  // back, say after a failover to a Redis with a slower clock, live events still flow.)
  private deliverBatch (message: Buffer, afterCatchUp: boolean): void {
    let pos = 0
    while (pos < message.length) {
      const a = message.indexOf(10, pos)
      const b = message.indexOf(10, a + 1)
      const c = message.indexOf(10, b + 1)
      const d = message.indexOf(10, c + 1)
      const id = message.toString('latin1', pos, a)
      const end = d + 1 + Number(message.toString('latin1', c + 1, d))
      pos = end
      if (afterCatchUp && this.cursor !== null && compareIds(id, this.cursor) <= 0) continue
      this.cursor = id
      // Delivered here already, during the outage it was published in.
      if (c > b + 1 && message.toString('latin1', b + 1, c) === this.opts.instanceId) continue
      const field = message.toString('utf8', a + 1, b)
      const topics = field === '' ? null : field.includes(',') ? field.split(',') : [field]
      if (!this.opts.wants(topics)) continue
      this.opts.deliver({ id, topics, frame: message.subarray(d + 1, end) })
    }
  }

  // (Re)connected: subscribe, then fetch from history what was published while away,
  // holding live messages until it is delivered. The id cursor drops the overlap.
  private async onSubReady (): Promise<void> {
    if (this.closing) return
    const generation = ++this.generation
    this.held ??= []
    try {
      await this.opts.sub.subscribe(this.channel)
    } catch (err) {
      this.opts.onError(err as Error, 'subscribe')
      return // the next 'ready' tries again; held messages wait for it
    }
    // Nothing delivered yet: clients that came while Redis was unreachable still want
    // what was published since this instance started.
    const from = this.cursor ?? (this.opts.topics().length > 0 ? this.since : null)
    while (from !== null && !this.closing && generation === this.generation) { // eslint-disable-line no-unmodified-loop-condition
      try {
        await this.catchUp(from)
        break
      } catch (err) {
        this.opts.onError(err as Error, 'catch-up')
        if (this.opts.sub.status !== 'ready') return
        await new Promise(resolve => setTimeout(resolve, 500))
      }
    }
    if (generation !== this.generation) return
    const held = this.held
    this.held = null
    for (const message of held) this.deliverBatch(message, true)
  }

  private async catchUp (after: string): Promise<void> {
    // A Redis that restarted empty has no last id: nothing to catch up on, not a gap.
    const { events, gap } = await this.read(this.opts.topics(), after, false)
    if (gap) this.opts.onGap()
    for (const d of events) {
      if (this.cursor !== null && compareIds(d.id, this.cursor) <= 0) continue
      this.cursor = d.id
      if (d.origin === this.opts.instanceId) continue
      this.replayed++
      this.opts.deliver(d)
    }
  }
}
