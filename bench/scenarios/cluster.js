// Two instances and one Redis: clients split evenly between the instances, events
// published alternately to both with `concurrency` POSTs in flight. Every client must
// get every event exactly once, in id order. `capacity` is the same with more clients
// than one process may hold (each instance at a 20,000 fd limit).
import { ClientPool } from '../clients.js'
import { measureRun, sleep } from '../measure.js'
import { median, table } from '../report.js'
import { rssBytes, startRedis, startService } from '../targets.js'

async function twoInstances (opts, log, { group, clients, events, rounds, title }) {
  const redis = await startRedis()
  const prefix = `bench:${process.pid}:${group}:`
  const env = { MAX_CLIENTS: String(opts.maxClients) }
  const pool = new ClientPool({ processes: Math.max(2, Math.ceil(clients / 12000)) })
  pool.start()
  const instances = []
  const runs = []
  let conn
  let memory
  try {
    instances.push(await startService({ name: 'instance-a', redisUrl: redis.url, prefix, nofile: 20000, env }))
    instances.push(await startService({ name: 'instance-b', redisUrl: redis.url, prefix, nofile: 20000, env }))
    await pool.connect(`${group}-warm`, instances, 200)
    await measureRun(pool, `${group}-warm`, { servers: instances, publishTo: instances, events: 5, bytes: opts.bytes, quietMs: 1000 })
    await pool.close(`${group}-warm`)
    await sleep(1000)
    const before = instances.map(s => rssBytes(s.pids()))
    conn = await pool.connect(group, instances, clients)
    await sleep(2000)
    const after = instances.map(s => rssBytes(s.pids()))
    memory = instances.map((s, i) => ({ name: s.name, before: before[i], after: after[i], perClient: (after[i] - before[i]) / (conn.ok / instances.length) }))
    log(`  ${conn.ok}/${clients} clients connected in ${conn.ms} ms (${JSON.stringify(conn.statuses)})`)
    for (let r = 0; r < rounds; r++) {
      const run = await measureRun(pool, group, { servers: instances, publishTo: instances, events, bytes: opts.bytes, concurrency: opts.concurrency, rate: opts.rate, quietMs: 5000, extraPids: redis.pids() })
      runs.push(run)
      log(`  round ${r + 1}: ${run.deliveries}/${run.expected} delivered, missing ${run.missing}, duplicates ${run.duplicates}, out of order ${run.outOfOrder}, ${Math.round(run.deliveriesPerSec)}/s, p99 ${run.p99.toFixed(1)} ms`)
      if (run.publishError !== null) log(`    publish answers: ${JSON.stringify(run.publishStatuses)}, ${run.publishRetried} retried after a 503, first: ${run.publishError}`)
      await sleep(500)
    }
  } finally {
    await pool.close(group).catch(() => {})
    await pool.stop()
    for (const s of instances) await s.stop()
    await redis.stop()
  }
  const rows = runs.map((x, r) => [r + 1, x.clients, x.events, x.expected, x.deliveries, x.missing, x.duplicates, x.outOfOrder, x.malformed, x.closedEarly, `${x.publishRejected}/${x.publishRetried}`,
    x.deliveriesPerSec, x.p50, x.p99, x.max, x.serverUsPerDelivery, x.extraCpuMs])
  const text = `### ${title}\n\n` +
    `${conn.ok} of ${clients} clients connected (${JSON.stringify(conn.statuses)}), ${conn.ok / 2} per instance; ` +
    `idle RSS growth per connection: ${memory.map(m => `${m.name} ${(m.perClient / 1024).toFixed(1)} KB`).join(', ')}.\n\n` +
    table(['round', 'clients', 'events', 'expected', 'delivered', 'missing', 'duplicates', 'out of order', 'malformed (sampled)', 'closed early', 'publishes refused/retried',
      'deliveries/s', 'p50 ms', 'p99 ms', 'max ms', 'servers µs/delivery', 'redis CPU ms'], rows)
  const summary = {
    clients: conn.ok,
    requested: clients,
    missing: runs.reduce((n, x) => n + x.missing, 0),
    duplicates: runs.reduce((n, x) => n + x.duplicates, 0),
    outOfOrder: runs.reduce((n, x) => n + x.outOfOrder, 0),
    deliveriesPerSec: median(runs.map(x => x.deliveriesPerSec)),
    p99: median(runs.map(x => x.p99)),
    kbPerClient: memory.map(m => m.perClient / 1024)
  }
  return { text, summary, runs, memory }
}

export function cluster (opts, log) {
  return twoInstances(opts, log, {
    group: 'cluster',
    clients: opts.clusterClients,
    events: opts.clusterEvents,
    rounds: opts.clusterRounds,
    title: `Two instances + Redis: ${opts.clusterClients} clients split between them, ${opts.clusterEvents} events published alternately, ${opts.concurrency} in flight`
  })
}

export function capacity (opts, log) {
  return twoInstances(opts, log, {
    group: 'capacity',
    clients: opts.capacityClients,
    events: opts.capacityEvents,
    rounds: 1,
    title: `Capacity: ${opts.capacityClients} clients on two instances (each process at a 20,000 fd limit), ${opts.capacityEvents} events`
  })
}
