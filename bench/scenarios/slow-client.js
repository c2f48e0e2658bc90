// A client that stops reading. One instance (single-instance mode, CLIENT_BUFFER_BYTES
// small), N normal clients on one topic, and in every other run K slow clients on the
// same topic: raw sockets in this process that send the GET, read the response head and
// then never read again (socket.pause()). Events are published at a steady rate; the
// volume per client is well above the kernel's socket buffers (~4 MB on loopback) plus
// the bound, so a slow client must trip it. Runs with and without the slow clients
// alternate; per run: the normal clients' latency and loss, the instance's
// sse_slow_clients_disconnected_total, how much each slow client got before its stream
// ended, and the instance's RSS (peak growth over the run).
import http from 'node:http'
import net from 'node:net'
import { ClientPool } from '../harness/clients.js'
import { measureRun, sleep } from '../harness/measure.js'
import { median, ratio, table } from '../harness/report.js'
import { rssBytes, startService } from '../harness/targets.js'

function metrics (server) {
  return new Promise(resolve => {
    const req = http.get({ host: server.host, port: server.port, path: '/metrics' }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', c => { text += c })
      res.on('end', () => {
        const read = name => {
          const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text)
          return m === null ? NaN : Number(m[1])
        }
        resolve({
          slowDisconnected: read('sse_slow_clients_disconnected_total'),
          dropped: read('sse_events_dropped_total'),
          clients: read('sse_clients')
        })
      })
    })
    req.setTimeout(5000, () => req.destroy())
    req.on('error', () => resolve({ slowDisconnected: NaN, dropped: NaN, clients: NaN }))
  })
}

/** A stream that reads its response head and then stops reading. */
function openSlow (server) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: server.host, port: server.port })
    const slow = { sock, status: 0, bytes: 0, ended: null }
    let head = ''
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('slow client: no response head within 10 s')) }, 10000)
    sock.on('connect', () => {
      sock.write(`GET ${server.streamPath} HTTP/1.1\r\nHost: ${server.host}:${server.port}\r\nAccept: text/event-stream\r\n\r\n`)
    })
    const onHead = buf => {
      head += buf.toString('latin1')
      const h = head.indexOf('\r\n\r\n')
      if (h < 0) return
      sock.pause()
      sock.off('data', onHead)
      clearTimeout(timer)
      slow.status = Number(head.slice(9, 12))
      slow.bytes = head.length - h - 4
      resolve(slow)
    }
    sock.on('data', onHead)
    sock.on('error', err => {
      slow.ended ??= err.code ?? 'error'
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** Reads what the kernel still holds for a slow client; 'closed' when the server ended it. */
function drainSlow (slow, timeoutMs = 3000) {
  return new Promise(resolve => {
    const { sock } = slow
    const done = how => {
      if (slow.ended === null) slow.ended = how
      clearTimeout(timer)
      sock.destroy()
      resolve(slow)
    }
    const timer = setTimeout(() => done('still open'), timeoutMs)
    sock.on('data', buf => { slow.bytes += buf.length })
    sock.on('end', () => done('closed by server'))
    sock.on('close', () => done('closed by server'))
    sock.on('error', err => done(`closed by server (${err.code})`))
    sock.resume()
  })
}

export async function slowClient (opts, log) {
  const { slowClients: clients, slowCount: count, slowEvents: events, slowBytes: bytes, slowRate: rate, slowRounds: rounds, slowBuffer: bound } = opts
  const env = { CLIENT_BUFFER_BYTES: String(bound), HISTORY_SIZE: String(Math.max(1000, events)), MAX_CLIENTS: String(opts.maxClients) }
  const pool = new ClientPool({ processes: 1 })
  pool.start()
  let server
  const runs = []
  let conn
  try {
    server = await startService({ name: 'slow', env })
    conn = await pool.connect('slow', [server], clients)
    log(`  ${conn.ok}/${clients} normal clients connected in ${conn.ms} ms (${JSON.stringify(conn.statuses)})`)
    // One unmeasured run like the measured ones: JIT, heap and a full history
    // (HISTORY_SIZE = events) before the first measured run, which would otherwise carry
    // the warm-up (slower, RSS growing) whichever side it is.
    await measureRun(pool, 'slow', { servers: [server], publishTo: [server], events, bytes, rate, concurrency: opts.concurrency, quietMs: 3000 })
    await sleep(1000)
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first: with, without | without, with | ... (an even number of
      // rounds puts each side first equally often; the first run of a pair tends to be slower).
      const order = r % 2 === 0 ? [true, false] : [false, true]
      for (const withSlow of order) {
        await sleep(1000)
        const m0 = await metrics(server)
        const rss0 = rssBytes(server.pids())
        const slows = withSlow ? await Promise.all(Array.from({ length: count }, () => openSlow(server))) : []
        let peak = rss0
        const sampler = setInterval(() => { peak = Math.max(peak, rssBytes(server.pids())) }, 50)
        let run
        try {
          run = await measureRun(pool, 'slow', { servers: [server], publishTo: [server], events, bytes, rate, concurrency: opts.concurrency, quietMs: 3000 })
        } finally {
          clearInterval(sampler)
        }
        peak = Math.max(peak, rssBytes(server.pids()))
        const m1 = await metrics(server)
        for (const s of slows) await drainSlow(s)
        await sleep(500)
        const rss1 = rssBytes(server.pids())
        const row = {
          round: r + 1,
          withSlow,
          run,
          slow: slows.map(s => ({ status: s.status, bytes: s.bytes, ended: s.ended })),
          slowDisconnected: m1.slowDisconnected - m0.slowDisconnected,
          dropped: m1.dropped - m0.dropped,
          rssBefore: rss0,
          rssPeak: peak,
          rssAfter: rss1
        }
        runs.push(row)
        log(`  round ${r + 1} ${withSlow ? `with ${count} slow` : 'without'}: p50 ${run.p50.toFixed(1)} ms, p99 ${run.p99.toFixed(1)} ms, missing ${run.missing}, dup ${run.duplicates}, ` +
          `${Math.round(run.deliveriesPerSec)}/s, slow disconnected ${row.slowDisconnected}, RSS +${((peak - rss0) / 1048576).toFixed(1)} MiB peak` +
          (withSlow ? `; slow clients got ${row.slow.map(s => `${(s.bytes / 1048576).toFixed(2)} MiB (${s.ended})`).join(', ')}` : ''))
        if (run.publishError !== null) log(`    publish answers: ${JSON.stringify(run.publishStatuses)}, first: ${run.publishError}`)
      }
    }
  } finally {
    await pool.close('slow').catch(() => {})
    await pool.stop()
    if (server !== undefined) await server.stop()
  }
  const mib = b => b / 1048576
  const rows = runs.map(x => [x.round, x.withSlow ? `with ${count}` : 'without', x.run.clients, x.run.deliveries, x.run.missing, x.run.duplicates, x.run.outOfOrder,
    x.run.deliveriesPerSec, x.run.p50, x.run.p99, x.run.max, x.slowDisconnected, x.dropped,
    x.withSlow ? x.slow.map(s => `${mib(s.bytes).toFixed(2)} (${s.ended})`).join(', ') : '-',
    mib(x.rssBefore), mib(x.rssPeak - x.rssBefore), mib(x.rssAfter - x.rssBefore), x.run.end])
  const side = withSlow => runs.filter(x => x.withSlow === withSlow)
  const summarize = list => ({
    runs: list.length,
    p50: median(list.map(x => x.run.p50)),
    p99: median(list.map(x => x.run.p99)),
    max: median(list.map(x => x.run.max)),
    deliveriesPerSec: median(list.map(x => x.run.deliveriesPerSec)),
    missing: list.reduce((n, x) => n + x.run.missing, 0),
    duplicates: list.reduce((n, x) => n + x.run.duplicates, 0),
    outOfOrder: list.reduce((n, x) => n + x.run.outOfOrder, 0),
    slowDisconnected: list.reduce((n, x) => n + x.slowDisconnected, 0),
    slowOpened: list.reduce((n, x) => n + x.slow.length, 0),
    rssPeakGrowth: median(list.map(x => x.rssPeak - x.rssBefore)),
    rssPeakGrowthMax: Math.max(...list.map(x => x.rssPeak - x.rssBefore))
  })
  const a = summarize(side(true))
  const b = summarize(side(false))
  const p99Ratio = b.p99 > 0 ? a.p99 / b.p99 : NaN
  const summaryRows = [
    [`with ${count} slow`, a.runs, a.deliveriesPerSec, a.p50, a.p99, a.max, `${a.missing}/${a.duplicates}/${a.outOfOrder}`, `${a.slowDisconnected} of ${a.slowOpened}`, mib(a.rssPeakGrowth), mib(a.rssPeakGrowthMax)],
    ['without', b.runs, b.deliveriesPerSec, b.p50, b.p99, b.max, `${b.missing}/${b.duplicates}/${b.outOfOrder}`, '-', mib(b.rssPeakGrowth), mib(b.rssPeakGrowthMax)]
  ]
  const perSlowMiB = mib(events * (bytes + 40))
  const text = `### Slow clients: ${conn.ok} normal clients + ${count} that stop reading, one instance, ${events} events of ${bytes} bytes at ${rate}/s, CLIENT_BUFFER_BYTES ${bound}, median of ${rounds} alternated rounds\n\n` +
    `Each slow client is offered ~${perSlowMiB.toFixed(1)} MiB, above the loopback socket buffers (~4 MiB) plus the bound. One unmeasured run of the same size comes first (warm-up, full history: HISTORY_SIZE = events). Latency runs from each event's slot at the rate to its arrival at each normal client.\n\n` +
    table(['run', 'runs', 'deliveries/s', 'p50 ms', 'p99 ms', 'max ms', 'missing/dup/ooo (normal clients)', 'slow clients disconnected', 'RSS peak growth MiB (median)', 'RSS peak growth MiB (max)'], summaryRows) +
    `\n\np99 with slow clients / without: **${ratio(a.p99, b.p99)}** (target <= 2x); p50 ratio ${ratio(a.p50, b.p50)}.\n\nEvery run:\n\n` +
    table(['round', 'slow clients', 'normal clients', 'delivered', 'missing', 'duplicates', 'out of order', 'deliveries/s', 'p50 ms', 'p99 ms', 'max ms',
      'slow disconnected (metric)', 'frames dropped (metric)', 'slow clients: MiB received (how it ended)', 'RSS before MiB', 'RSS peak growth MiB', 'RSS growth after MiB', 'ended'], rows)
  const summary = { with: a, without: b, p99Ratio, clients: conn.ok, count, events, bytes, rate, bound }
  return { text, summary, runs: runs.map(x => ({ ...x, run: { ...x.run, hist: undefined } })) }
}
