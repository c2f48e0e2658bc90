// A stream that comes back with a Last-Event-ID: hold its live events, replay what it
// missed from each of its logs (at the socket's pace), then let it go live from there.
import type { Bus, LogHistory } from './bus/bus.js'
import { BROADCAST, encodeCursor } from './cursor.js'
import { compareIds } from './event-id.js'
import { encodeReset, type ResetReason } from './frame.js'
import type { Client, Delivery, Hub, Sink } from './hub.js'

/** A socket a replay can wait on when its send buffer is full. */
export interface DrainableSink extends Sink {
  on (event: 'drain' | 'close', listener: () => void): unknown
  off (event: 'drain' | 'close', listener: () => void): unknown
}

/** Waits until the socket took what it had, or closed. */
async function drained (sink: DrainableSink): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => {
      sink.off('drain', done)
      sink.off('close', done)
      resolve()
    }
    sink.on('drain', done)
    sink.on('close', done)
  })
}

/** Each log's missed events in one sequence: each log's order kept, copies of one event once. */
export function mergeHistories (histories: LogHistory[]): Delivery[] {
  const all: Delivery[] = []
  for (const h of histories) for (const d of h.events) all.push(d)
  // Positions are "<ms>-<seq>" of the Redis (or local) clock: sorting by them keeps each
  // log's order and interleaves the logs by time.
  all.sort((a, b) => compareIds(a.position!, b.position!))
  const seen = new Set<string>()
  return all.filter(d => d.uid === null || (!seen.has(d.uid) && seen.add(d.uid) !== null))
}

/**
 * Whether the client got a copy of an event of several topics through another log already:
 * its copy in the entry log (written first) is at or before the client's position there.
 */
function hadIt (d: Delivery, logs: string[], entry: (topics: string[]) => string | null, from: Array<string | null>): boolean {
  if (d.uid === null || d.topics === null || d.priors === null) return false
  const first = entry(d.topics)
  if (first === null || first === d.log) return false
  const sorted = [...d.topics].sort()
  const at = sorted.indexOf(first)
  const position = d.priors.split(',')[at]
  const mine = from[logs.indexOf(first)]
  return position !== undefined && position !== '' && mine !== null && mine !== undefined && compareIds(position, mine) <= 0
}

/**
 * How resumes ended: `replayed` (history covered the position), `reset` (some log had a
 * gap, signalled), `history-unavailable` (history could not be read: one reset for every
 * log), `abandoned` (the client left before going live).
 */
export const RESUME_OUTCOMES = ['replayed', 'reset', 'history-unavailable', 'abandoned'] as const
export type ResumeOutcome = typeof RESUME_OUTCOMES[number]

/** Resumes by outcome and the resets they sent by reason, counted as they happen. */
export interface ResumeCounts {
  outcomes: Record<ResumeOutcome, number>
  resets: Record<ResetReason, number>
}

/**
 * Adds `client` to the hub after replaying its history after `positions` (one per log of
 * the stream, as decodeCursor gives them). Resolves with the error that kept history from
 * being read, if any: the client then gets a reset for each log and goes live. `counts`
 * (for metrics) gets how it ended and the resets it sent.
 */
export async function resume (hub: Hub, bus: Bus, client: Client, sink: DrainableSink, positions: Array<string | undefined>, counts?: ResumeCounts): Promise<Error | null> {
  hub.add(client, true)
  const logs = hub.logsOf(client)
  const cursor: Array<string | null> = positions.map(p => p === undefined || p === '' ? null : p)
  client.cursor = cursor
  let histories: LogHistory[]
  try {
    histories = await Promise.all(logs.map(async (log, i) => await bus.history(log, positions[i] === '' ? null : positions[i])))
  } catch (err) {
    if (client.closed) return ended(counts, 'abandoned', null)
    // Nothing can be said of what was missed: each log starts again from its newest event.
    for (let i = 0; i < logs.length; i++) cursor[i] = hub.head(logs[i]) ?? cursor[i]
    sink.write(encodeReset(encodeCursor(cursor), 'history-unavailable', null))
    if (counts !== undefined) counts.resets['history-unavailable']++
    hub.goLive(client, cursor)
    return ended(counts, 'history-unavailable', err as Error)
  }
  if (client.closed) return ended(counts, 'abandoned', null)
  let gaps = 0
  // A gap is signalled once per log, naming its topic, before what history still holds;
  // with nothing after it, the reset's id moves the cursor past the gap.
  for (let i = 0; i < logs.length; i++) {
    const h = histories[i]
    if (!h.gap) continue
    let id: string | null = null
    // Even when it is behind the client's position (history lost and begun again): the
    // events after it must not be taken for ones the client has.
    if (h.events.length === 0) {
      cursor[i] = h.last
      id = encodeCursor(cursor)
    }
    hub.signal(client, encodeReset(id, 'history', logs[i] === BROADCAST ? null : logs[i]))
    gaps++
  }
  if (counts !== undefined) counts.resets.history += gaps
  const group = client.group!
  const from = cursor.slice()
  for (const d of mergeHistories(histories.map(h => ({ ...h, events: h.events.filter(d => !hadIt(d, logs, group.entry.bind(group), from)) })))) {
    const entry = d.uid !== null && d.topics !== null ? group.entry(d.topics) : d.log
    const entryLater = entry !== d.log && !histories[logs.indexOf(entry!)].events.some(e => e.uid === d.uid)
    if (!hub.replay(client, d, entryLater)) await drained(sink)
    if (client.closed) return ended(counts, 'abandoned', null)
  }
  hub.goLive(client, cursor)
  return ended(counts, gaps > 0 ? 'reset' : 'replayed', null)
}

function ended (counts: ResumeCounts | undefined, outcome: ResumeOutcome, err: Error | null): Error | null {
  if (counts !== undefined) counts.outcomes[outcome]++
  return err
}
