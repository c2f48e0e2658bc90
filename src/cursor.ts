// A stream's position: one position per log it reads (its topics, sorted, then the
// broadcasts), as nchan's multiplexed channels keep one message id per channel. The event
// id a client sees is this cursor written out; a one-topic stream's id is its topic's
// position alone while no broadcast has been sent.
import { isEventId } from './event-id.js'

/** The log of events published without a topic; `*` is no topic's name. */
export const BROADCAST = '*'

/** The logs a stream of `topics` reads, in cursor order. */
export function streamLogs (topics: string[]): string[] {
  return [...[...new Set(topics)].sort(), BROADCAST]
}

/** Positions joined by '.', '' where nothing was seen; trailing empty ones left out. */
export function encodeCursor (positions: ReadonlyArray<string | null>): string {
  let end = positions.length
  while (end > 0 && (positions[end - 1] ?? '') === '') end--
  let out = ''
  for (let i = 0; i < end; i++) {
    if (i > 0) out += '.'
    out += positions[i] ?? ''
  }
  return out
}

/**
 * A Last-Event-ID as positions for `count` logs ('' = nothing seen), or null when it is no
 * cursor this service writes. More parts than logs: the stream's topics changed, so no
 * part can be trusted and each is `undefined` (history cannot say what was missed).
 */
export function decodeCursor (id: string, count: number): Array<string | undefined> | null {
  if (id.length > count * 34 + 64) return null
  const parts = id.split('.')
  for (const p of parts) if (p !== '' && !isEventId(p)) return null
  if (parts.length > count) return new Array<undefined>(count).fill(undefined)
  const out: Array<string | undefined> = new Array<string>(count).fill('')
  for (let i = 0; i < parts.length; i++) out[i] = parts[i]
  return out
}
