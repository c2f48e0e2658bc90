// A stream that comes back with a Last-Event-ID: hold its live events, replay what it
// missed from history (at the socket's pace), then send it the held events newer than that.
import type { Bus } from './bus/bus.js'
import { compareIds } from './event-id.js'
import { encodeReset } from './frame.js'
import type { Client, Hub, Sink } from './hub.js'

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

/**
 * Adds `client` to the hub after replaying history after `lastId`. Resolves with the
 * error that kept history from being read (the client then gets a reset and goes live).
 */
export async function resume (hub: Hub, bus: Bus, client: Client, sink: DrainableSink, lastId: string): Promise<Error | null> {
  hub.add(client, true)
  let cursor = lastId
  let failure: Error | null = null
  try {
    const { events, gap, last } = await bus.history(client.topics, lastId)
    // A signal, not an event: written as is, not counted as a replayed delivery.
    if (gap) sink.write(encodeReset(events.length === 0 ? last : null, 'history'))
    for (const d of events) {
      if (!hub.replay(client, d.frame)) await drained(sink)
      if (client.closed) return null
    }
    if (events.length > 0) cursor = events[events.length - 1].id!
    else if (gap && last !== null && compareIds(last, cursor) > 0) cursor = last
  } catch (err) {
    failure = err as Error
    sink.write(encodeReset(null, 'history-unavailable'))
  }
  hub.goLive(client, cursor)
  return failure
}
