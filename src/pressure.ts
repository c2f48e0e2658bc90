// Load shedding's measure: is this process under more strain than its limits allow?
import { performance, type EventLoopUtilization } from 'node:perf_hooks'
import { watchLoopDelay, type LoopDelay } from './loop-delay.js'

export interface PressureLimits {
  /** The mean event-loop delay over the last interval, in ms (0 = not checked). */
  maxEventLoopDelayMs: number
  /** Event-loop utilization 0-1 over the last interval (0 = not checked). */
  maxEventLoopUtilization: number
  maxHeapUsedBytes: number
  maxRssBytes: number
  sampleIntervalMs: number
}

/** The first limit over, in the order checked, with what was measured. */
export interface Strain {
  type: 'eventLoopDelay' | 'heapUsedBytes' | 'rssBytes' | 'eventLoopUtilization'
  value: number
}

export const limitsSet = (limits: PressureLimits): boolean =>
  limits.maxEventLoopDelayMs > 0 || limits.maxEventLoopUtilization > 0 || limits.maxHeapUsedBytes > 0 || limits.maxRssBytes > 0

/** What `measured` says against `limits`: null when every limit holds. */
export function strainOf (limits: PressureLimits, measured: Record<Strain['type'], number>): Strain | null {
  if (limits.maxEventLoopDelayMs > 0 && measured.eventLoopDelay > limits.maxEventLoopDelayMs) return { type: 'eventLoopDelay', value: measured.eventLoopDelay }
  if (limits.maxHeapUsedBytes > 0 && measured.heapUsedBytes > limits.maxHeapUsedBytes) return { type: 'heapUsedBytes', value: measured.heapUsedBytes }
  if (limits.maxRssBytes > 0 && measured.rssBytes > limits.maxRssBytes) return { type: 'rssBytes', value: measured.rssBytes }
  if (limits.maxEventLoopUtilization > 0 && measured.eventLoopUtilization > limits.maxEventLoopUtilization) return { type: 'eventLoopUtilization', value: measured.eventLoopUtilization }
  return null
}

export class Pressure {
  /** As of the last sample; null while every limit holds. */
  strain: Strain | null = null
  readonly limits: PressureLimits
  private timer: NodeJS.Timeout | null = null
  private delay: LoopDelay | null = null
  private delaySeen = { sum: 0, count: 0 }
  private elu: EventLoopUtilization = performance.eventLoopUtilization()

  constructor (limits: PressureLimits) {
    this.limits = limits
  }

  start (): void {
    if (this.timer !== null || !limitsSet(this.limits)) return
    if (this.limits.maxEventLoopDelayMs > 0) {
      this.delay = watchLoopDelay()
      this.delaySeen = this.delay.totals()
    }
    this.elu = performance.eventLoopUtilization()
    this.timer = setTimeout(this.sample, this.limits.sampleIntervalMs).unref()
  }

  stop (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.delay?.close()
    this.delay = null
  }

  private readonly sample = (): void => {
    const elu = performance.eventLoopUtilization()
    this.strain = strainOf(this.limits, {
      eventLoopDelay: this.delayMs(),
      heapUsedBytes: this.limits.maxHeapUsedBytes > 0 ? process.memoryUsage().heapUsed : 0,
      rssBytes: this.limits.maxRssBytes > 0 ? process.memoryUsage.rss() : 0,
      eventLoopUtilization: performance.eventLoopUtilization(elu, this.elu).utilization
    })
    this.elu = elu
    this.timer?.refresh()
  }

  /** The mean delay of the loop's samples since the last pressure sample, in ms. */
  private delayMs (): number {
    if (this.delay === null) return 0
    const now = this.delay.totals()
    const count = now.count - this.delaySeen.count
    const mean = count > 0 ? (now.sum - this.delaySeen.sum) / count / 1e6 : 0
    this.delaySeen = now
    return mean
  }
}
