// Two instances and one Redis: clients split evenly between the instances, events
// published alternately to both with `concurrency` POSTs in flight. Every client must
// get every event exactly once, in id order. The same for two nchan nginx sharing their
// own Redis (`--cluster-targets=service,nchan`), measured in the same run: both keep
// their clients connected and each round runs both, in a rotated order (round 1
// sse-fanout then nchan, round 2 nchan then sse-fanout, ...). `capacity` is the
// sse-fanout pair with more clients than one process may hold (each at a 20,000 fd limit).
import { ClientPool } from '../harness/clients.js'
import { measureRun, sleep } from '../harness/measure.js'
import { median, ratio, table } from '../harness/report.js'
import { nchanMissing, rssBytes, startNchan, startRedis, startService } from '../harness/targets.js'

const LABELS = {
  service: 'sse-fanout (Redis)',
  nchan: 'nchan (Redis)'
}

/**
 * One side: a private redis-server and two instances on it. Each side has its own
 * redis-server, so neither sees the other's keys, channels or CPU.
 */
async function startSide (name, opts, group, started) {
  const redis = await startRedis()
  started.push(redis)
  const instances = []
  if (name === 'service') {
    const prefix = `bench:${process.pid}:${group}:`
    const env = { MAX_CLIENTS: String(opts.maxClients) }
    for (const n of ['instance-a', 'instance-b']) {
      const s = await startService({ name: n, redisUrl: redis.url, prefix, nofile: 20000, env })
      started.push(s)
      instances.push(s)
    }
  } else if (name === 'nchan') {
    for (const n of ['nchan-a', 'nchan-b']) {
      const s = await startNchan({ name: n, redisUrl: redis.url, workers: opts.nchanWorkers, connections: opts.maxClients })
      started.push(s)
      instances.push(s)
    }
  } else {
    throw new Error(`unknown cluster target ${name} (service, nchan)`)
  }
  return { name, group, redis, instances }
}

/** Warm-up (200 clients, 5 events), then `clients` streams split over the two; RSS growth per stream. */
async function connectSide (pool, side, clients, opts, log) {
  const { group, instances } = side
  await pool.connect(`${group}-warm`, instances, 200)
  await measureRun(pool, `${group}-warm`, { servers: instances, publishTo: instances, events: 5, bytes: opts.bytes, quietMs: 1000, timeoutMs: 30000 })
  await pool.close(`${group}-warm`)
  await sleep(1000)
  const before = instances.map(s => rssBytes(s.pids()))
  const conn = await pool.connect(group, instances, clients)
  await sleep(2000)
  const after = instances.map(s => rssBytes(s.pids()))
  const memory = instances.map((s, i) => ({ name: s.name, before: before[i], after: after[i], perClient: (after[i] - before[i]) / (conn.ok / instances.length) }))
  log(`  ${LABELS[side.name]}: ${conn.ok}/${clients} clients connected in ${conn.ms} ms (${JSON.stringify(conn.statuses)})`)
  return { conn, memory }
}

function summarize (runs, conn, clients, memory) {
  const sum = k => runs.reduce((n, x) => n + x[k], 0)
  return {
    clients: conn.ok,
    requested: clients,
    missing: sum('missing'),
    duplicates: sum('duplicates'),
    outOfOrder: sum('outOfOrder'),
    malformed: sum('malformed'),
    closedEarly: sum('closedEarly'),
    refused: sum('publishRejected'),
    deliveriesPerSec: median(runs.map(x => x.deliveriesPerSec)),
    p50: median(runs.map(x => x.p50)),
    p99: median(runs.map(x => x.p99)),
    serverUsPerDelivery: median(runs.map(x => x.serverUsPerDelivery)),
    kbPerClient: memory.map(m => m.perClient / 1024)
  }
}

/**
 * `names`: the sides, in the order of round 1. Returns one result per side plus the text.
 */
async function twoInstances (opts, log, { names, groups, clients, events, rounds, timeoutMs }) {
  const total = clients * names.length
  const pool = new ClientPool({ processes: Math.max(2, Math.ceil(total / 12000)) })
  pool.start()
  const started = []
  const sides = []
  const results = Object.fromEntries(names.map(n => [n, { runs: [], conn: null, memory: [] }]))
  const sequence = []
  try {
    // Started and connected one after the other, all kept connected through the rounds.
    for (const name of names) {
      const side = await startSide(name, opts, groups[name], started)
      sides.push(side)
      const { conn, memory } = await connectSide(pool, side, clients, opts, log)
      results[name].conn = conn
      results[name].memory = memory
    }
    for (let r = 0; r < rounds; r++) {
      const order = sides.map((_, i) => sides[(i + r) % sides.length])
      for (const side of order) {
        const { name, group, instances, redis } = side
        const run = await measureRun(pool, group, { servers: instances, publishTo: instances, events, bytes: opts.bytes, concurrency: opts.concurrency, rate: opts.rate, quietMs: 5000, timeoutMs, extraPids: redis.pids() })
        results[name].runs.push(run)
        sequence.push({ name, round: r + 1, run })
        log(`  round ${r + 1} ${LABELS[name]}: ${run.deliveries}/${run.expected} delivered, missing ${run.missing}, duplicates ${run.duplicates}, out of order ${run.outOfOrder}, ${Math.round(run.deliveriesPerSec)}/s, p99 ${run.p99.toFixed(1)} ms, ended ${run.end}`)
        if (run.publishError !== null) log(`    publish answers: ${JSON.stringify(run.publishStatuses)}, ${run.publishRetried} retried after a 503, first: ${run.publishError}`)
        // An unfinished run (quiet or timeout) may still be delivering: let it drain, so
        // it does not spill into the next target's run or this target's next round.
        if (run.end !== 'complete') await pool.waitDone(group, { quietMs: 2000, timeoutMs: 60000 })
        await sleep(500)
      }
    }
  } finally {
    for (const side of sides) await pool.close(side.group).catch(() => {})
    await pool.stop()
    for (const s of started.reverse()) await s.stop()
  }
  for (const name of names) {
    const x = results[name]
    x.summary = summarize(x.runs, x.conn, clients, x.memory)
  }
  return { results, sequence }
}

const HEADERS = ['round', 'clients', 'events', 'expected', 'delivered', 'missing', 'duplicates', 'out of order', 'malformed (sampled)', 'closed early', 'publishes refused/retried',
  'deliveries/s', 'p50 ms', 'p99 ms', 'max ms', 'servers µs/delivery', 'redis CPU ms', 'ended']

function row (first, x) {
  return [...first, x.clients, x.events, x.expected, x.deliveries, x.missing, x.duplicates, x.outOfOrder, x.malformed, x.closedEarly, `${x.publishRejected}/${x.publishRetried}`,
    x.deliveriesPerSec, x.p50, x.p99, x.max, x.serverUsPerDelivery, x.extraCpuMs, x.end]
}

function connectedLine (label, conn, clients, memory) {
  return `${label}: ${conn.ok} of ${clients} clients connected (${JSON.stringify(conn.statuses)}), ${conn.ok / 2} per instance; ` +
    `idle RSS growth per connection: ${memory.map(m => `${m.name} ${(m.perClient / 1024).toFixed(1)} KB`).join(', ')}.`
}

export async function cluster (opts, log) {
  const notes = []
  let names = opts.clusterTargets
  for (const n of names) if (LABELS[n] === undefined) throw new Error(`unknown cluster target ${n} (service, nchan)`)
  if (names.includes('nchan')) {
    const why = nchanMissing()
    if (why !== null) {
      notes.push(`nchan skipped: ${why}. The bench installs nothing.`)
      names = names.filter(n => n !== 'nchan')
    }
  }
  if (names.length === 0) return { text: '### Two instances + Redis\n\nNothing to measure.\n\n' + notes.map(n => `Note: ${n}`).join('\n'), summary: {}, notes }
  const clients = opts.clusterClients
  const events = opts.clusterEvents
  // Long enough for a slow target to finish (20,000 deliveries/s), at least 2 minutes;
  // a run that hits it ends with the counts it has ("ended: timeout").
  const timeoutMs = opts.clusterTimeout > 0 ? opts.clusterTimeout * 1000 : Math.max(120000, clients * events / 20)
  const { results, sequence } = await twoInstances(opts, log, {
    names,
    groups: { service: 'cluster', nchan: 'cluster-nchan' },
    clients,
    events,
    rounds: opts.clusterRounds,
    timeoutMs
  })
  const workers = `${opts.nchanWorkers} worker${opts.nchanWorkers === 1 ? '' : 's'}`
  const summaryRows = names.map(n => {
    const s = results[n].summary
    return [LABELS[n], s.clients, s.deliveriesPerSec, s.p50, s.p99, s.missing, s.duplicates, s.outOfOrder, s.malformed, s.closedEarly, s.refused, s.serverUsPerDelivery,
      s.kbPerClient.map(k => k.toFixed(1)).join(' / ')]
  })
  let text = `### Two instances + Redis: ${clients} clients split between them, ${events} events published alternately, ${opts.concurrency} in flight` +
    (names.length > 1 ? `, ${names.map(n => LABELS[n]).join(' and ')} alternated over ${opts.clusterRounds} rounds` : '') + '\n\n' +
    names.map(n => `- ${connectedLine(LABELS[n], results[n].conn, clients, results[n].memory)}`).join('\n') + '\n' +
    (names.includes('nchan') ? `- nchan: two nginx (${workers} each) with \`nchan_redis_pass\` to an \`upstream { nchan_redis_server }\` (distributed storage mode) on their own redis-server; sse-fanout's two instances have another one.\n` : '') +
    '\n' + table(['target', 'clients', 'deliveries/s', 'p50 ms', 'p99 ms', 'missing', 'duplicates', 'out of order', 'malformed (sampled)', 'closed early', 'publishes refused', 'servers µs/delivery', 'KB/idle conn'], summaryRows) +
    `\n\n(deliveries/s, p50, p99, µs/delivery: medians of ${opts.clusterRounds} rounds; missing, duplicates, out of order: sums over the rounds.)`
  if (names.includes('service') && names.includes('nchan')) {
    const a = results.service.summary
    const b = results.nchan.summary
    text += `\n\nsse-fanout / nchan (Redis) deliveries/s: **${ratio(a.deliveriesPerSec, b.deliveriesPerSec)}** (p99: ${ratio(a.p99, b.p99)}, lower is better for sse-fanout)`
  }
  text += '\n\nEvery run, in the order they ran:\n\n' + table(['target', ...HEADERS], sequence.map(x => row([LABELS[x.name], x.round], x.run)))
  const refusals = names.flatMap(n => results[n].runs.filter(x => x.publishError !== null).slice(0, 1).map(x => `${LABELS[n]} publish answers ${JSON.stringify(x.publishStatuses)}, first: ${x.publishError}`))
  if (refusals.length > 0) text += '\n\n' + refusals.map(x => `Note: ${x}`).join('\n')
  if (notes.length > 0) text += '\n\n' + notes.map(n => `Note: ${n}`).join('\n')
  const summary = Object.fromEntries(names.map(n => [n, results[n].summary]))
  const runs = Object.fromEntries(names.map(n => [n, results[n].runs]))
  const memory = Object.fromEntries(names.map(n => [n, results[n].memory]))
  return { text, summary, runs, memory, notes, labels: Object.fromEntries(names.map(n => [n, LABELS[n]])) }
}

export async function capacity (opts, log) {
  const clients = opts.capacityClients
  const { results } = await twoInstances(opts, log, {
    names: ['service'],
    groups: { service: 'capacity' },
    clients,
    events: opts.capacityEvents,
    rounds: 1,
    timeoutMs: 120000
  })
  const { runs, conn, memory, summary } = results.service
  const text = `### Capacity: ${clients} clients on two instances (each process at a 20,000 fd limit), ${opts.capacityEvents} events\n\n` +
    `${conn.ok} of ${clients} clients connected (${JSON.stringify(conn.statuses)}), ${conn.ok / 2} per instance; ` +
    `idle RSS growth per connection: ${memory.map(m => `${m.name} ${(m.perClient / 1024).toFixed(1)} KB`).join(', ')}.\n\n` +
    table(HEADERS, runs.map((x, r) => row([r + 1], x)))
  return { text, summary, runs, memory }
}
