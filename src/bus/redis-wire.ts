// The bytes between the Redis bus and its scripts (redis-scripts.ts): what a publish
// sends, what sharded Pub/Sub carries back, what a history read returns; and the names
// of a log's keys and channel.
import type { Delivery } from '../hub.js'
import type { Outgoing } from './bus.js'

/** A log's stream key, which is also its sharded channel: `{log}` is its hash tag. */
export function logKey (prefix: string, log: string): string {
  return `${prefix}{${log}}`
}

/** The log of a key or channel logKey made, null when it is none. */
export function keyLog (prefix: string, key: string): string | null {
  if (!key.startsWith(prefix + '{') || !key.endsWith('}')) return null
  return key.slice(prefix.length + 1, -1)
}

/** A topics field as the scripts keep it: '' is a broadcast, else names joined by ','. */
export function parseTopicsField (field: string): string[] | null {
  return field === '' ? null : field.includes(',') ? field.split(',') : [field]
}

/**
 * One script call's events: "<uid>\n<priors>\n<topics>\n<origin>\n<body bytes>\n<body>" each, as one
 * Buffer written once rather than a string of many pieces the socket would flatten.
 */
export function pack (events: Array<{ event: Outgoing, uid: string, priors: string }>, origin: string): Buffer {
  const heads = new Array<string>(events.length)
  const lengths = new Array<number>(events.length)
  let size = 0
  for (let i = 0; i < events.length; i++) {
    const { event, uid, priors } = events[i]
    lengths[i] = Buffer.byteLength(event.body)
    heads[i] = `${uid}\n${priors}\n${event.topics === null ? '' : event.topics.join(',')}\n${origin}\n${lengths[i]}\n`
    size += Buffer.byteLength(heads[i]) + lengths[i]
  }
  const buf = Buffer.allocUnsafe(size)
  let at = 0
  for (let i = 0; i < events.length; i++) {
    at += buf.write(heads[i], at)
    at += buf.write(events[i].event.body, at, lengths[i])
  }
  return buf
}

/**
 * Walks a Pub/Sub message: records of "<position>\n<uid>\n<priors>\n<topics>\n<origin>\n
 * <body bytes>\n<body>". One reader per bus, reused.
 */
export class MessageReader {
  position = ''
  uid: string | null = null
  priors: string | null = null
  topics: string[] | null = null
  origin = ''
  body: Buffer = Buffer.alloc(0)
  private message: Buffer = Buffer.alloc(0)
  private pos = 0

  reset (message: Buffer): void {
    this.message = message
    this.pos = 0
  }

  /** Reads the next record; false at the end. */
  next (): boolean {
    const m = this.message
    const pos = this.pos
    if (pos >= m.length) return false
    const a = m.indexOf(10, pos)
    const b = m.indexOf(10, a + 1)
    const c = m.indexOf(10, b + 1)
    const d = m.indexOf(10, c + 1)
    const e = m.indexOf(10, d + 1)
    const f = m.indexOf(10, e + 1)
    this.position = m.toString('latin1', pos, a)
    this.uid = b > a + 1 ? m.toString('latin1', a + 1, b) : null
    this.priors = this.uid === null ? null : m.toString('latin1', b + 1, c)
    this.topics = parseTopicsField(m.toString('utf8', c + 1, d))
    this.origin = m.toString('latin1', d + 1, e)
    const end = f + 1 + Number(m.toString('latin1', e + 1, f))
    this.body = m.subarray(f + 1, end)
    this.pos = end
    return true
  }
}

export interface HistoryReply {
  /** Newest position of the log, null when it has none. */
  last: string | null
  gap: boolean
  events: Array<Delivery & { origin: string }>
}

/** HISTORY_SCRIPT's reply for `log`: newest position, gap flag, then six fields per event. */
export function parseHistory (log: string, out: Array<string | number>): HistoryReply {
  const events: Array<Delivery & { origin: string }> = []
  for (let i = 2; i < out.length; i += 6) {
    const uid = String(out[i + 1])
    events.push({
      log,
      position: String(out[i]),
      uid: uid === '' ? null : uid,
      priors: uid === '' ? null : String(out[i + 2]),
      topics: parseTopicsField(String(out[i + 3])),
      origin: String(out[i + 4]),
      body: Buffer.from(String(out[i + 5]))
    })
  }
  return { last: out[0] === '' ? null : String(out[0]), gap: out[1] === 1, events }
}
