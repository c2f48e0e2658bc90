// A reconnect storm: N clients (10,000 by default) resume at once, split over two
// instances on one Redis, each with the id of the event just before the last M (100)
// events of its topic, as the clients of a dead instance would. While they replay, L live
// events are published at a steady rate, alternately to both instances (their POST round
// trip is the publish latency during the storm). Every client must get the M missed
// events in order, then the live ones, each once, and no reset. Redis work: the
// instances' sse_history_reads_total and Redis's commands processed, per resumed client.
import { connect } from 'node:net'
import { createHistogram, percentile, record } from '../harness/histogram.js'
import { payload } from '../harness/publisher.js'
import { ClientPool } from '../harness/clients.js'
import { sleep } from '../harness/measure.js'
import { table } from '../harness/report.js'
import { cpuNs, startRedis, startService } from '../harness/targets.js'

function nowUs () {
  const t = process.hrtime()
  return t[0] * 1e6 + t[1] / 1e3
}

async function post (target, events) {
  const res = await fetch(`http://${target.host}:${target.port}/notify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(events.length === 1 ? events[0] : events)
  })
  const body = await res.json().catch(() => ({}))
  return { status: res.status, body }
}

async function metric (target, name) {
  const text = await (await fetch(`http://${target.host}:${target.port}/metrics`)).text()
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text)
  return m === null ? NaN : Number(m[1])
}

/** INFO fields of a private redis-server, over one raw connection. */
async function redisInfo (redis, fields) {
  return await new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: redis.port })
    let buf = ''
    s.on('connect', () => s.write('INFO everything\r\n'))
    s.on('data', d => {
      buf += d
      const head = /^\$(\d+)\r\n/.exec(buf)
      if (head !== null && Buffer.byteLength(buf) >= head[0].length + Number(head[1])) {
        s.destroy()
        const out = {}
        for (const f of fields) out[f] = Number(new RegExp(`^${f}:([\\d.]+)`, 'm').exec(buf)?.[1] ?? NaN)
        resolve(out)
      }
    })
    s.on('error', reject)
  })
}

export async function storm (opts, log) {
  const N = opts.stormClients
  const M = opts.stormMissed
  const L = opts.stormLive
  const topic = 'bench'
  const started = []
  const pool = new ClientPool({ processes: 4 })
  try {
    const redis = await startRedis()
    started.push(redis)
    const prefix = `bench:${process.pid}:storm:`
    const env = { MAX_CLIENTS: String(opts.maxClients) }
    const instances = []
    for (const n of ['instance-a', 'instance-b']) {
      const s = await startService({ name: n, redisUrl: redis.url, prefix, nofile: 20000, env })
      started.push(s)
      instances.push(s)
    }
    pool.start()
    // Where the dead instance's clients were: the event before the M they missed.
    const seen = await post(instances[0], [{ topic, data: 'seen' }])
    if (seen.status !== 202 || seen.body.fanout !== 'cluster') throw new Error(`publish: ${seen.status} ${JSON.stringify(seen.body)}`)
    const from = seen.body.id
    const missed = Array.from({ length: M }, (_, s) => ({ topic, data: payload(s, opts.bytes) }))
    for (let i = 0; i < M; i += 1000) {
      const r = await post(instances[1], missed.slice(i, i + 1000))
      if (r.status !== 202) throw new Error(`publish: ${r.status} ${JSON.stringify(r.body)}`)
    }
    for (const s of instances) s.streamPath = `/stream?topic=${topic}&lastEventId=${encodeURIComponent(from)}`
    await pool.arm('storm', M + L, opts.bytes, { capacity: pool.perProcess(N), replay: M })

    const reads0 = await Promise.all(instances.map(s => metric(s, 'sse_history_reads_total')))
    const redis0 = await redisInfo(redis, ['total_commands_processed', 'used_cpu_sys', 'used_cpu_user'])
    const cpu0 = instances.map(s => cpuNs(s.pids()))
    const t0 = nowUs()
    // Live events at a steady rate from the storm's start, timed one by one.
    const latency = createHistogram()
    const statuses = {}
    const publishing = (async () => {
      for (let k = 0; k < L; k++) {
        const due = t0 + k * 1e6 / opts.stormLiveRate
        const wait = (due - nowUs()) / 1000
        if (wait > 1) await sleep(wait)
        const sent = nowUs()
        const r = await post(instances[k % 2], [{ topic, data: payload(M + k, opts.bytes, sent) }])
        record(latency, nowUs() - sent)
        statuses[r.status] = (statuses[r.status] ?? 0) + 1
      }
    })()
    // --storm-on=one: every client on instance A, as when the other instance died.
    const onto = opts.stormOn === 'one' ? [instances[0]] : instances
    const conn = await pool.connect('storm', onto, N, { concurrency: opts.stormConcurrency, keepSlots: true })
    const connectedUs = nowUs()
    log(`storm: ${conn.ok}/${N} streams open after ${((connectedUs - t0) / 1e6).toFixed(1)} s (${JSON.stringify(conn.statuses)})`)
    await publishing
    const wait = await pool.waitDone('storm', { quietMs: 10000, timeoutMs: opts.stormTimeout * 1000 })
    const cpu1 = instances.map(s => cpuNs(s.pids()))
    const redis1 = await redisInfo(redis, ['total_commands_processed', 'used_cpu_sys', 'used_cpu_user'])
    const reads1 = await Promise.all(instances.map(s => metric(s, 'sse_history_reads_total')))
    const r = await pool.collect('storm')
    const reads = reads1.reduce((a, b) => a + b, 0) - reads0.reduce((a, b) => a + b, 0)
    // The INFO connections themselves are two commands.
    const commands = redis1.total_commands_processed - redis0.total_commands_processed - 1
    const row = {
      clients: N,
      open: conn.ok,
      connectStatuses: conn.statuses,
      missed: M,
      live: L,
      openS: (connectedUs - t0) / 1e6,
      replayedClients: r.replayedClients,
      allReplayedS: r.replayedClients === r.clients ? (r.replayedUs - t0) / 1e6 : NaN,
      complete: r.complete,
      allCompleteS: r.complete === r.clients ? (r.lastUs - t0) / 1e6 : NaN,
      end: wait.reason,
      historyReads: reads,
      historyReadsPerClient: reads / r.clients,
      redisCommands: commands,
      redisCommandsPerClient: commands / r.clients,
      redisCpuMs: ((redis1.used_cpu_sys + redis1.used_cpu_user) - (redis0.used_cpu_sys + redis0.used_cpu_user)) * 1000,
      instancesCpuMs: cpu1.map((c, i) => (c - cpu0[i]) / 1e6),
      resets: r.resets,
      refused: r.refused,
      missing: r.missing,
      clientsMissing: r.clientsMissing,
      duplicates: r.duplicates,
      outOfOrder: r.outOfOrder,
      unexpected: r.unexpected,
      malformed: r.malformed,
      sampled: r.sampled,
      closedEarly: r.closedEarly,
      publishStatuses: statuses,
      publishP50: percentile(latency, 0.5) / 1000,
      publishP99: percentile(latency, 0.99) / 1000,
      publishMax: latency.max / 1000
    }
    log(`storm: ${JSON.stringify(row)}`)
    const text = `### Reconnect storm: ${N.toLocaleString('en-US')} clients resume at once on ${opts.stormOn === 'one' ? 'one instance (its peer publishes too; one Redis)' : 'two instances (one Redis)'}, ${M} events of ${opts.bytes} bytes back, ${L} live events at ${opts.stormLiveRate}/s during it, ${opts.stormConcurrency} connects in flight\n\n` +
      table(['streams open', 'all open s', 'all replayed s', 'all complete s', 'history reads', 'per client', 'Redis commands', 'per client', 'Redis CPU ms', 'instances CPU ms', 'resets', 'refused', 'missing/dup/ooo/malformed', 'publish p50/p99/max ms', 'publishes'],
        [[`${row.open}/${N}`, row.openS, row.allReplayedS, row.allCompleteS, row.historyReads, row.historyReadsPerClient.toFixed(4), row.redisCommands, row.redisCommandsPerClient.toFixed(4), row.redisCpuMs, row.instancesCpuMs.map(x => Math.round(x)).join(' + '), row.resets, row.refused,
          `${row.missing}/${row.duplicates}/${row.outOfOrder}/${row.malformed}`, `${row.publishP50.toFixed(1)}/${row.publishP99.toFixed(1)}/${row.publishMax.toFixed(1)}`, JSON.stringify(statuses)]]) +
      `\n\n(ended: ${row.end}; ${row.replayedClients} of ${r.clients} clients got all ${M} missed events, ${row.complete} all ${M + L}; ${row.closedEarly} streams closed early; connect statuses ${JSON.stringify(conn.statuses)})`
    return { text, row }
  } finally {
    await pool.stop().catch(() => {})
    for (const s of started.reverse()) await s.stop()
  }
}
