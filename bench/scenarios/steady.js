// A steady stream: the highest rate each target sustains for `steadySeconds` with every
// event delivered to every client and p99 within `steadyP99` ms, found by doubling the
// rate from `steadyStart` until a run fails, then halving the gap `steadySteps` times.
// Targets take turns probe by probe, so a noisy minute hits both. Then both run at half
// the slowest target's rate, alternated, for p99 and p99.9 side by side.
import { ClientPool } from '../harness/clients.js'
import { measureRun, sleep } from '../harness/measure.js'
import { median, ratio, table } from '../harness/report.js'
import { nchanMissing, startNaive, startNchan, startService } from '../harness/targets.js'

const LABELS = { service: 'sse-fanout (single)', nchan: 'nchan (nginx)', naive: 'naive node:http' }

async function start (name, opts) {
  if (name === 'service') return startService({ name })
  if (name === 'naive') return startNaive()
  if (name === 'nchan') return startNchan({ workers: opts.nchanWorkers })
  throw new Error(`unknown steady target ${name} (service, nchan, naive)`)
}

export async function steady (opts, log) {
  const notes = []
  let names = opts.steadyTargets
  if (names.includes('nchan') && nchanMissing() !== null) {
    notes.push(`nchan skipped: ${nchanMissing()}`)
    names = names.filter(n => n !== 'nchan')
  }
  const pool = new ClientPool({ processes: Math.max(2, Math.ceil(opts.steadyClients * names.length / 15000)) })
  pool.start()
  const servers = {}
  const probes = Object.fromEntries(names.map(n => [n, []]))
  const half = Object.fromEntries(names.map(n => [n, []]))
  const probe = async (name, rate) => {
    const s = servers[name]
    const events = Math.max(1, Math.round(rate * opts.steadySeconds))
    const run = await measureRun(pool, name, { servers: [s], publishTo: [s], events, bytes: opts.bytes, concurrency: 16, rate, quietMs: 3000, timeoutMs: opts.steadySeconds * 1000 + 60000 })
    const ok = run.end === 'complete' && run.missing === 0 && run.duplicates === 0 && run.p99 <= opts.steadyP99
    log(`  ${name} at ${rate}/s: ${ok ? 'sustained' : 'not sustained'}: p99 ${run.p99.toFixed(0)} ms, ${Math.round(run.deliveriesPerSec)} deliveries/s, missing ${run.missing}, ${run.end}`)
    return { rate, ok, run }
  }
  try {
    for (const name of names) {
      servers[name] = await start(name, opts)
      await pool.connect(`${name}-warm`, [servers[name]], 200)
      await measureRun(pool, `${name}-warm`, { servers: [servers[name]], publishTo: [servers[name]], events: 5, bytes: opts.bytes, quietMs: 1000 })
      await pool.close(`${name}-warm`)
      const c = await pool.connect(name, [servers[name]], opts.steadyClients)
      log(`  ${name}: ${c.ok} clients connected in ${c.ms} ms`)
    }
    // Per target: the highest rate that passed and the lowest that failed.
    const bounds = Object.fromEntries(names.map(n => [n, { pass: 0, fail: Infinity }]))
    const next = name => {
      const b = bounds[name]
      if (b.fail === Infinity) return b.pass === 0 ? opts.steadyStart : b.pass * 2
      return Math.round((b.pass + b.fail) / 2)
    }
    const done = name => {
      const b = bounds[name]
      if (b.fail === Infinity) return b.pass >= opts.steadyMax
      const bisected = probes[name].filter(p => p.rate < b.fail && p.rate > b.pass).length
      return probes[name].length >= 2 && (bisected >= opts.steadySteps || b.fail - b.pass <= Math.max(1, b.pass / 16))
    }
    while (names.some(n => !done(n))) {
      for (const name of names.filter(n => !done(n))) {
        const rate = next(name)
        if (rate <= bounds[name].pass || rate >= bounds[name].fail) {
          bounds[name].fail = bounds[name].pass // nothing left between them
          continue
        }
        await sleep(1000)
        const p = await probe(name, rate)
        probes[name].push(p)
        if (p.ok) bounds[name].pass = rate
        else bounds[name].fail = rate
        if (!p.ok && bounds[name].pass === 0 && rate <= 1) bounds[name].fail = 0
      }
    }
    const slowest = Math.min(...names.map(n => bounds[n].pass))
    const halfRate = Math.max(1, Math.round(slowest / 2))
    for (let r = 0; r < 2; r++) {
      for (const name of r % 2 === 0 ? names : [...names].reverse()) {
        await sleep(1000)
        const s = servers[name]
        const events = Math.max(1, Math.round(halfRate * opts.steadySeconds))
        half[name].push(await measureRun(pool, name, { servers: [s], publishTo: [s], events, bytes: opts.bytes, concurrency: 16, rate: halfRate, quietMs: 3000, timeoutMs: opts.steadySeconds * 1000 + 60000 }))
      }
    }
    const best = Object.fromEntries(names.map(n => [n, probes[n].filter(p => p.ok).sort((a, b) => b.rate - a.rate)[0] ?? null]))
    const rows = names.map(n => {
      const b = best[n]
      return [LABELS[n], b?.rate ?? 0, b?.run.deliveriesPerSec, b?.run.p50, b?.run.p99, probes[n].map(p => `${p.rate}${p.ok ? '' : '✗'}`).join(' ')]
    })
    let text = `### Steady stream: ${opts.steadyClients} clients per target, ${opts.bytes}-byte events at a fixed rate for ${opts.steadySeconds} s, sustained = every event to every client, none twice, p99 <= ${opts.steadyP99} ms\n\n` +
      'Latency runs from each event\'s slot in the schedule (not from when its request got out) to its arrival.\n\n' +
      table(['target', 'highest rate sustained (events/s)', 'deliveries/s there', 'p50 ms', 'p99 ms', 'rates probed (✗ = not sustained)'], rows)
    if (names.includes('service')) {
      const others = names.filter(n => n !== 'service')
      if (others.length > 0) text += '\n\nsse-fanout (single) / each: ' + others.map(n => `${LABELS[n]} ${ratio(bounds.service.pass, bounds[n].pass)} the sustained rate`).join(', ') + '.'
    }
    const halfRows = names.map(n => [LABELS[n], median(half[n].map(x => x.p50)), median(half[n].map(x => x.p99)), median(half[n].map(x => x.p999)), median(half[n].map(x => x.max)), half[n].reduce((k, x) => k + x.missing, 0)])
    text += `\n\nAt ${halfRate} events/s (half the slowest target's sustained rate), median of 2 alternated runs:\n\n` +
      table(['target', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'missing'], halfRows)
    if (names.includes('service') && names.includes('nchan')) {
      text += `\n\nsse-fanout / nchan at that rate: p99 ${ratio(median(half.service.map(x => x.p99)), median(half.nchan.map(x => x.p99)))}, p99.9 ${ratio(median(half.service.map(x => x.p999)), median(half.nchan.map(x => x.p999)))}.`
    }
    if (notes.length > 0) text += '\n\n' + notes.map(n => `Note: ${n}`).join('\n')
    const halfRuns = Object.fromEntries(names.map(n => [n, half[n].map(x => ({ rate: halfRate, p50: x.p50, p99: x.p99, p999: x.p999, max: x.max, missing: x.missing, quantiles: x.quantiles }))]))
    return { text, bounds, labels: Object.fromEntries(names.map(n => [n, LABELS[n]])), half: halfRuns, probes: Object.fromEntries(names.map(n => [n, probes[n].map(p => ({ rate: p.rate, ok: p.ok, p99: p.run.p99, deliveriesPerSec: p.run.deliveriesPerSec, missing: p.run.missing }))])), halfRate }
  } finally {
    for (const name of Object.keys(servers)) await pool.close(name).catch(() => {})
    await pool.stop()
    for (const s of Object.values(servers)) await s.stop()
  }
}
