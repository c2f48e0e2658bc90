// Side by side on one machine in one run: this service (single instance, and optionally
// one instance with Redis), the naive node:http server and nchan. All targets keep their
// N idle clients connected; each round runs, target after target in a rotated order,
// one event to the idle clients and then a burst. Medians over the rounds.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ClientPool } from '../harness/clients.js'
import { measureRun, sleep } from '../harness/measure.js'
import { summarize } from '../harness/profile-summary.js'
import { median, ratio, table } from '../harness/report.js'
import { nchanMissing, OUT_DIR, rssBytes, startNaive, startNchan, startRedis, startService } from '../harness/targets.js'

const LABELS = {
  service: 'sse-fanout (single)',
  'service-redis': 'sse-fanout (+Redis)',
  naive: 'naive node:http',
  nchan: 'nchan (nginx)'
}

async function start (name, { redis, profileDir, nchanWorkers }) {
  const nodeArgs = profileDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', join(profileDir, name)]
  if (name === 'service') return startService({ name, nodeArgs })
  if (name === 'service-redis') return startService({ name, redisUrl: redis.url, prefix: `bench:${process.pid}:`, nodeArgs })
  if (name === 'naive') return startNaive()
  if (name === 'nchan') return startNchan({ workers: nchanWorkers })
  throw new Error(`unknown target ${name}`)
}

export async function fanout (opts, log) {
  LABELS.nchan = `nchan (nginx, ${opts.nchanWorkers} worker${opts.nchanWorkers === 1 ? '' : 's'})`
  const notes = []
  let names = opts.targets
  if (names.includes('nchan')) {
    const why = nchanMissing()
    if (why !== null) {
      notes.push(`nchan skipped: ${why}. The bench installs nothing.`)
      names = names.filter(n => n !== 'nchan')
    }
  }
  const profileDir = opts.profile ? join(OUT_DIR, `profile-${Date.now()}`) : null
  const redis = names.includes('service-redis') ? await startRedis() : null
  const pool = new ClientPool({ processes: Math.max(2, Math.ceil(opts.clients * names.length / 15000)) })
  pool.start()
  const servers = {}
  const memory = {}
  const runs = Object.fromEntries(names.map(n => [n, { idle: [], burst: [] }]))
  try {
    for (const name of names) {
      const s = await start(name, { redis, profileDir, nchanWorkers: opts.nchanWorkers })
      servers[name] = s
      // Warm up (JIT, buffers) before the baseline, so growth is the connections' own.
      await pool.connect(`${name}-warm`, [s], 200)
      await measureRun(pool, `${name}-warm`, { servers: [s], publishTo: [s], events: 5, bytes: opts.bytes, quietMs: 1000 })
      await pool.close(`${name}-warm`)
      await sleep(1000)
      const before = rssBytes(s.pids())
      const c = await pool.connect(name, [s], opts.clients)
      await sleep(2000)
      const after = rssBytes(s.pids())
      memory[name] = { clients: c.ok, statuses: c.statuses, connectMs: c.ms, before, after, perClient: (after - before) / c.ok }
      log(`  ${name}: ${c.ok} clients connected in ${c.ms} ms, RSS ${(before / 1048576).toFixed(1)} -> ${(after / 1048576).toFixed(1)} MiB`)
    }
    for (let r = 0; r < opts.rounds; r++) {
      const order = names.map((_, i) => names[(i + r) % names.length])
      for (const name of order) {
        const s = servers[name]
        const extraPids = redis === null ? [] : redis.pids()
        await sleep(opts.idleMs)
        const idle = await measureRun(pool, name, { servers: [s], publishTo: [s], events: 1, bytes: opts.bytes, concurrency: 1, quietMs: 2000, extraPids })
        const burst = await measureRun(pool, name, { servers: [s], publishTo: [s], events: opts.events, bytes: opts.bytes, concurrency: opts.concurrency, rate: opts.rate, quietMs: 3000, extraPids })
        runs[name].idle.push(idle)
        runs[name].burst.push(burst)
        log(`  round ${r + 1} ${name}: ${Math.round(burst.deliveriesPerSec)} deliveries/s, p99 ${burst.p99.toFixed(1)} ms, missing ${burst.missing}; one event p99 ${idle.p99.toFixed(1)} ms`)
        if (burst.publishError !== null) log(`    publish answers: ${JSON.stringify(burst.publishStatuses)}, ${burst.publishRetried} retried after a 503, first: ${burst.publishError}`)
      }
    }
  } finally {
    for (const name of Object.keys(servers)) await pool.close(name).catch(() => {})
    await pool.stop()
    for (const s of Object.values(servers)) await s.stop()
    if (redis !== null) await redis.stop()
  }

  const summary = {}
  for (const name of names) {
    const b = runs[name].burst
    const i = runs[name].idle
    const sum = (list, k) => list.reduce((n, x) => n + x[k], 0)
    summary[name] = {
      deliveriesPerSec: median(b.map(x => x.deliveriesPerSec)),
      p50: median(b.map(x => x.p50)),
      p99: median(b.map(x => x.p99)),
      max: median(b.map(x => x.max)),
      idleP50: median(i.map(x => x.p50)),
      idleP99: median(i.map(x => x.p99)),
      idleMax: median(i.map(x => x.max)),
      missing: sum(b, 'missing') + sum(i, 'missing'),
      refused: sum(b, 'publishRejected') + sum(i, 'publishRejected'),
      retried: sum(b, 'publishRetried') + sum(i, 'publishRetried'),
      published: sum(b, 'events') + sum(i, 'events'),
      duplicates: sum(b, 'duplicates') + sum(i, 'duplicates'),
      outOfOrder: sum(b, 'outOfOrder') + sum(i, 'outOfOrder'),
      malformed: sum(b, 'malformed') + sum(i, 'malformed'),
      sampled: sum(b, 'sampled') + sum(i, 'sampled'),
      serverUsPerDelivery: median(b.map(x => x.serverUsPerDelivery)),
      harnessUsPerDelivery: median(b.map(x => x.harnessUsPerDelivery)),
      kbPerClient: memory[name].perClient / 1024
    }
  }
  const base = summary.service
  const rows = names.map(n => {
    const s = summary[n]
    return [LABELS[n], s.deliveriesPerSec, s.p50, s.p99, s.max, s.idleP99, s.idleMax, s.kbPerClient, s.serverUsPerDelivery, s.harnessUsPerDelivery,
      `${s.missing}/${s.duplicates}/${s.outOfOrder}/${s.malformed}`, `${s.refused}/${s.retried}/${s.published}`]
  })
  const mode = opts.rate > 0 ? `${opts.events} events at ${opts.rate}/s` : `burst of ${opts.events} events, ${opts.concurrency} POSTs in flight`
  let text = `### Fan-out: ${memory[names[0]]?.clients ?? 0} clients per target, ${mode}, ${opts.bytes}-byte payloads, median of ${opts.rounds} alternated rounds\n\n` +
    'Latency runs from the time each event was meant to be sent (the burst\'s start) to its arrival at each client; "1 event" is one event to the idle clients after 1 s of quiet.\n\n' +
    table(['target', 'deliveries/s', 'p50 ms', 'p99 ms', 'max ms', '1 event p99 ms', '1 event max ms', 'KB/idle conn', 'server µs/delivery', 'harness µs/delivery', 'missing/dup/ooo/malformed', 'publishes refused/retried/sent'], rows)
  if (base !== undefined) {
    const ratioRows = names.filter(n => n !== 'service').map(n => [LABELS[n],
      ratio(base.deliveriesPerSec, summary[n].deliveriesPerSec), ratio(base.p99, summary[n].p99), ratio(base.idleP99, summary[n].idleP99), ratio(base.kbPerClient, summary[n].kbPerClient)])
    if (ratioRows.length > 0) {
      text += '\n\nsse-fanout (single) relative to each (deliveries/s: higher is better for sse-fanout; latency and memory: lower is better):\n\n' +
        table(['vs', 'deliveries/s ratio', 'burst p99 ratio', '1 event p99 ratio', 'KB/conn ratio'], ratioRows)
    }
  }
  const perRound = names.flatMap(n => runs[n].burst.map((b, r) => [LABELS[n], r + 1, b.deliveriesPerSec, b.p99, runs[n].idle[r].p99, b.seconds, b.publishRejected, b.end]))
  text += '\n\nEvery round (burst deliveries/s and p99, then the one-event p99):\n\n' +
    table(['target', 'round', 'deliveries/s', 'p99 ms', '1 event p99 ms', 'burst s', 'publishes refused', 'ended'], perRound)
  const refusals = names.flatMap(n => runs[n].burst.concat(runs[n].idle).filter(x => x.publishError !== null).slice(0, 1).map(x => `${LABELS[n]} refused publishes: ${x.publishError}`))
  if (refusals.length > 0) text += '\n\n' + refusals.map(x => `Note: ${x}`).join('\n')
  if (notes.length > 0) text += '\n\n' + notes.map(n => `Note: ${n}`).join('\n')

  if (profileDir !== null) text += '\n\n' + profiles(profileDir, names, runs)
  const labels = Object.fromEntries(names.map(n => [n, LABELS[n]]))
  return { text, summary, memory, runs, notes, labels }
}

/** Top self time of each profiled service, burst windows only. */
function profiles (dir, names, runs) {
  const parts = []
  for (const name of names.filter(n => n.startsWith('service'))) {
    let files
    try {
      files = readdirSync(join(dir, name)).filter(f => f.endsWith('.cpuprofile'))
    } catch {
      files = []
    }
    if (files.length === 0) {
      parts.push(`(no profile written for ${name})`)
      continue
    }
    const profile = JSON.parse(readFileSync(join(dir, name, files[0]), 'utf8'))
    const windows = runs[name].burst.map(b => b.window)
    const { totalMs, rows, inclusive } = summarize(profile, { windows, top: 20 })
    parts.push(`### CPU profile of ${LABELS[name]} during the bursts (${totalMs.toFixed(0)} ms sampled, ${join(dir, name, files[0])})\n\n` +
      table(['function', 'self ms', 'self %', 'total %'], rows.map(r => [r.fn, r.selfMs, r.selfPct, r.totalPct])) +
      '\n\nInclusive time of the hot path:\n\n' +
      table(['function', 'total ms', 'total %'], inclusive(/^(deliver|send|write|deliverBatch|onMessage|encodeFrame|publish|heartbeat) /).slice(0, 10).map(r => [r.fn, r.totalMs, r.totalPct])))
  }
  return parts.join('\n\n')
}
