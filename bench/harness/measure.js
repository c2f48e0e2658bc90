// One measured run: arm the clients, publish, wait for the deliveries, and turn what
// the client processes and /proc counted into one row.
import { percentile, quantilesMs } from './histogram.js'
import { publish } from './publisher.js'
import { cpuNs } from './targets.js'

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

/**
 * `servers`: whose CPU is charged to the run (all their threads); `publishTo`: where the
 * events go, alternately. Deliveries/s runs from the first send to the last delivery.
 * The wait ends when every client has every event, after `quietMs` without a delivery,
 * or after `timeoutMs`; `end` says which, and the counts are what arrived by then.
 */
export async function measureRun (pool, group, { servers, publishTo, events, bytes, concurrency = 16, rate = 0, batch = 1, quietMs = 3000, timeoutMs = 120000, extraPids = [], log = line => console.error(line) }) {
  await pool.arm(group, events, bytes)
  const pids = servers.flatMap(s => s.pids())
  const cpu0 = cpuNs(pids)
  const extra0 = cpuNs(extraPids)
  const pub0 = process.cpuUsage()
  if (rate > 0 && events / rate >= 10) log(`    ${group}: publishing ${events} events at ${rate}/s (~${Math.round(events / rate)} s)`)
  const pub = await publish({ targets: publishTo, events, bytes, concurrency, rate, batch })
  const pubCpu = process.cpuUsage(pub0)
  // A long wait (a slow target, a big run) says how far it got every 10 s.
  const progress = (s, ms) => log(`    ${group}: ${s.deliveries.toLocaleString('en-US')}/${(s.clients * events).toLocaleString('en-US')} delivered, ${Math.round(ms / 1000)} s after the last publish`)
  const wait = await pool.waitDone(group, { quietMs, timeoutMs, progress })
  const cpu1 = cpuNs(pids)
  const extra1 = cpuNs(extraPids)
  const r = await pool.collect(group)
  const seconds = (r.lastUs - pub.startUs) / 1e6
  const rejected = Object.entries(pub.statuses).filter(([k]) => !/^2\d\d$/.test(k)).reduce((n, [, v]) => n + v, 0)
  return {
    events,
    clients: r.clients,
    expected: r.clients * events,
    deliveries: r.deliveries,
    seconds,
    window: [pub.startUs, r.lastUs],
    deliveriesPerSec: seconds > 0 ? r.deliveries / seconds : NaN,
    p50: percentile(r.hist, 0.5) / 1000,
    p99: percentile(r.hist, 0.99) / 1000,
    p999: percentile(r.hist, 0.999) / 1000,
    max: r.hist.max / 1000,
    // [[q, ms], ...]: the latency distribution, small enough to keep in results-*.json.
    quantiles: quantilesMs(r.hist),
    // A refused publish is no event: count as missing only what was accepted and not received.
    missing: batch === 1 ? Math.max(0, r.missing - rejected * r.clients) : r.missing,
    missingRaw: r.missing,
    clientsMissing: r.clientsMissing,
    duplicates: r.duplicates,
    outOfOrder: r.outOfOrder,
    unexpected: r.unexpected,
    sampled: r.sampled,
    malformed: r.malformed,
    closedEarly: r.closedEarly,
    serverUsPerDelivery: r.deliveries > 0 ? (cpu1 - cpu0) / 1000 / r.deliveries : NaN,
    harnessUsPerDelivery: r.deliveries > 0 ? r.cpuUs / r.deliveries : NaN,
    harnessSysShare: r.cpuUs > 0 ? r.cpuSysUs / r.cpuUs : NaN,
    publisherCpuMs: (pubCpu.user + pubCpu.system) / 1000,
    extraCpuMs: (extra1 - extra0) / 1e6,
    publishRejected: rejected,
    publishStatuses: pub.statuses,
    publishError: pub.firstError,
    publishRetried: pub.retried,
    end: wait.reason
  }
}
