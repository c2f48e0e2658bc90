// Event-loop delay, from one native monitor for the whole process (load shedding and
// /metrics share it): every wake-up of an idle instance costs CPU, a JS timer's several
// times a native one's, so there is one, and no finer than RESOLUTION_MS.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'

export const LOOP_DELAY_RESOLUTION_MS = 100

let monitor: IntervalHistogram | null = null
let users = 0
/** What earlier windows held, in ns: a reset keeps it here. */
let sumBefore = 0
let countBefore = 0

export interface LoopDelay {
  /** How late each sample fired, in ns, since the last reset(); each value includes nothing of the resolution. */
  window: () => { count: number, min: number, max: number, mean: number, stddev: number, percentile: (p: number) => number }
  /** Starts a new window (a scrape's). */
  reset: () => void
  /** Every sample since the start, whatever the resets: for a mean over any span. */
  totals: () => { sum: number, count: number }
  close: () => void
}

const late = (ns: number): number => Math.max(0, ns - LOOP_DELAY_RESOLUTION_MS * 1e6)

export function watchLoopDelay (): LoopDelay {
  if (monitor === null) {
    monitor = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS })
    monitor.enable()
  }
  users++
  const m = monitor
  let closed = false
  return {
    window: () => ({
      count: m.count,
      min: m.count === 0 ? 0 : late(m.min),
      max: m.count === 0 ? 0 : late(m.max),
      mean: m.count === 0 ? 0 : late(m.mean),
      stddev: m.count === 0 ? 0 : m.stddev,
      percentile: (p: number) => m.count === 0 ? 0 : late(m.percentile(p))
    }),
    reset: () => {
      if (m.count > 0) {
        sumBefore += late(m.mean) * m.count
        countBefore += m.count
      }
      m.reset()
    },
    totals: () => ({ sum: sumBefore + (m.count === 0 ? 0 : late(m.mean) * m.count), count: countBefore + m.count }),
    close: () => {
      if (closed) return
      closed = true
      if (--users === 0 && monitor !== null) {
        monitor.disable()
        monitor = null
        sumBefore = 0
        countBefore = 0
      }
    }
  }
}
