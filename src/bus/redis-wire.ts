// The bytes between the Redis bus and its scripts (redis-scripts.ts): what a publish
// sends, what Pub/Sub carries back, what a history read returns.
import { compareIds } from '../event-id.js'
import { encodeFrame } from '../frame.js'
import type { Delivery } from '../hub.js'
import type { Outgoing } from './bus.js'

/** A history entry, with the instance that delivered it itself during an outage. */
export interface StoredEvent extends Delivery {
  id: string
  origin: string
}

/**
 * The events of one script call as one argument: "<topics>\n<origin>\n<body bytes>\n<body>"
 * each. One Buffer, written once, rather than a string of many pieces the socket write
 * would have to flatten.
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

/** A topics field as the scripts write it: '' is a broadcast, else names joined by ','. */
export function parseTopicsField (field: string): string[] | null {
  return field === '' ? null : field.includes(',') ? field.split(',') : [field]
}

/**
 * Walks a Pub/Sub message: records of "<id>\n<topics>\n<origin>\n<frame bytes>\n<frame>".
 * One reader per bus, reused: no allocation per record beyond the strings it reads.
 */
export class MessageReader {
  id = ''
  topics: string[] | null = null
  frameStart = 0
  frameEnd = 0
  private message: Buffer = Buffer.alloc(0)
  private pos = 0
  private topicsStart = 0
  private topicsEnd = 0
  private originStart = 0
  private originEnd = 0

  reset (message: Buffer): void {
    this.message = message
    this.pos = 0
  }

  /** Reads the next record's id; false at the end. Topics and frame are read on demand. */
  next (): boolean {
    const message = this.message
    const pos = this.pos
    if (pos >= message.length) return false
    const a = message.indexOf(10, pos)
    const b = message.indexOf(10, a + 1)
    const c = message.indexOf(10, b + 1)
    const d = message.indexOf(10, c + 1)
    this.id = message.toString('latin1', pos, a)
    this.topicsStart = a + 1
    this.topicsEnd = b
    this.originStart = b + 1
    this.originEnd = c
    this.frameStart = d + 1
    this.frameEnd = d + 1 + Number(message.toString('latin1', c + 1, d))
    this.pos = this.frameEnd
    return true
  }

  /** Whether the record was delivered by `instanceId` itself (during an outage). */
  isFrom (instanceId: string): boolean {
    return this.originEnd > this.originStart && this.message.toString('latin1', this.originStart, this.originEnd) === instanceId
  }

  readTopics (): string[] | null {
    return parseTopicsField(this.message.toString('utf8', this.topicsStart, this.topicsEnd))
  }

  /** The finished SSE frame, a view of the message (no copy). */
  frame (): Buffer {
    return this.message.subarray(this.frameStart, this.frameEnd)
  }
}

export interface HistoryReply {
  events: StoredEvent[]
  gap: boolean
  last: string | null
}

/** HISTORY_SCRIPT's reply: last id, gap flag, then id/topics/origin/body quads (may repeat). */
export function parseHistory (out: Array<string | number>): HistoryReply {
  const byId = new Map<string, StoredEvent>()
  for (let i = 2; i < out.length; i += 4) {
    const id = String(out[i])
    if (byId.has(id)) continue
    byId.set(id, { id, origin: String(out[i + 2]), topics: parseTopicsField(String(out[i + 1])), frame: encodeFrame(id, String(out[i + 3])) })
  }
  const events = [...byId.values()].sort((a, b) => compareIds(a.id, b.id))
  return { events, gap: out[1] === 1, last: out[0] === '' ? null : String(out[0]) }
}
