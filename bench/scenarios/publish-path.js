// The publish path: autocannon against POST /notify of one instance without Redis (the
// default `npm start`) and of one with Redis connected, single events and batches,
// beside a bare Fastify route that parses the same JSON: the framework's ceiling on
// this machine. Rounds alternate the order.
import autocannon from 'autocannon'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { summarize } from '../harness/profile-summary.js'
import { payload } from '../harness/publisher.js'
import { median, ratio, table } from '../harness/report.js'
import { cpuNs, OUT_DIR, startBareFastify, startRedis, startService } from '../harness/targets.js'

function nowUs () {
  const t = process.hrtime()
  return t[0] * 1e6 + t[1] / 1e3
}

function hammer (target, bodyText, { duration, connections }) {
  return autocannon({
    url: `http://${target.host}:${target.port}${target.publishPath}`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: bodyText,
    connections,
    pipelining: 1,
    duration
  })
}

export async function publishPath (opts, log) {
  const single = JSON.stringify({ topic: 'bench', data: payload(0, opts.bytes) })
  const batch = JSON.stringify(Array.from({ length: opts.batch }, (_, i) => ({ topic: 'bench', data: payload(i, opts.bytes) })))
  const redis = await startRedis()
  const servers = []
  const results = {}
  const windows = {}
  let variants = []
  const profileDir = opts.profile ? join(OUT_DIR, `profile-publish-${Date.now()}`) : null
  try {
    const nodeArgs = name => profileDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', join(profileDir, name)]
    const service = await startService({ name: 'service-redis', redisUrl: redis.url, prefix: `bench:${process.pid}:pub:`, nodeArgs: nodeArgs('service-redis') })
    servers.push(service)
    const alone = await startService({ name: 'service', nodeArgs: nodeArgs('service') })
    servers.push(alone)
    const bare = await startBareFastify()
    servers.push(bare)
    variants = [
      { name: 'bare Fastify route, 1 event', target: bare, body: single, events: 1 },
      { name: 'POST /notify, no Redis, 1 event', target: alone, body: single, events: 1 },
      { name: 'POST /notify + Redis, 1 event', target: service, body: single, events: 1 },
      { name: `bare Fastify route, batch of ${opts.batch}`, target: bare, body: batch, events: opts.batch },
      { name: `POST /notify, no Redis, batch of ${opts.batch}`, target: alone, body: batch, events: opts.batch },
      { name: `POST /notify + Redis, batch of ${opts.batch}`, target: service, body: batch, events: opts.batch }
    ]
    for (const v of variants) {
      results[v.name] = []
      windows[v.name] = []
      await hammer(v.target, v.body, { duration: 1, connections: opts.connections })
    }
    for (let r = 0; r < opts.rounds; r++) {
      const order = variants.map((_, i) => variants[(i + r) % variants.length])
      for (const v of order) {
        const server0 = cpuNs(v.target.pids())
        const redis0 = cpuNs(redis.pids())
        const t0 = nowUs()
        const res = await hammer(v.target, v.body, { duration: opts.duration, connections: opts.connections })
        windows[v.name].push([t0, nowUs()])
        const serverCpu = (cpuNs(v.target.pids()) - server0) / 1e7 / opts.duration
        const redisCpu = (cpuNs(redis.pids()) - redis0) / 1e7 / opts.duration
        const bad = res.non2xx + res.errors + res.timeouts
        results[v.name].push({ rps: res.requests.average, p50: res.latency.p50, p99: res.latency.p99, bad, events: v.events, serverCpu, redisCpu })
        log(`  round ${r + 1} ${v.name}: ${Math.round(res.requests.average)} req/s, p99 ${res.latency.p99} ms${bad > 0 ? `, ${bad} failed` : ''}`)
      }
    }
  } finally {
    for (const s of servers) await s.stop()
    await redis.stop()
  }
  const summary = {}
  for (const [name, list] of Object.entries(results)) {
    summary[name] = {
      rps: median(list.map(x => x.rps)),
      eventsPerSec: median(list.map(x => x.rps * x.events)),
      p50: median(list.map(x => x.p50)),
      p99: median(list.map(x => x.p99)),
      serverCpu: median(list.map(x => x.serverCpu)),
      redisCpu: median(list.map(x => x.redisCpu)),
      bad: list.reduce((n, x) => n + x.bad, 0)
    }
  }
  const names = Object.keys(summary)
  const rows = names.map(n => [n, summary[n].rps, summary[n].eventsPerSec, summary[n].p50, summary[n].p99, summary[n].serverCpu, summary[n].redisCpu, summary[n].bad])
  let text = `### Publish path: autocannon, ${opts.connections} connections, ${opts.duration} s per run, ${opts.bytes}-byte payloads, median of ${opts.rounds} alternated rounds\n\n` +
    table(['route', 'requests/s', 'events/s', 'p50 ms', 'p99 ms', 'server CPU %', 'redis CPU %', 'non-2xx/errors'], rows) +
    '\n\n(CPU % of one core, all threads, averaged over the run; autocannon runs in the bench process beside them.)' +
    `\n\nPOST /notify / bare route (requests/s): no Redis single ${ratio(summary[names[1]].rps, summary[names[0]].rps)}, batch ${ratio(summary[names[4]].rps, summary[names[3]].rps)}; ` +
    `with Redis single ${ratio(summary[names[2]].rps, summary[names[0]].rps)}, batch ${ratio(summary[names[5]].rps, summary[names[3]].rps)}.`
  if (profileDir === null) return { text, summary }
  // One profile per service process, in a folder of its own.
  for (const v of variants.filter(v => v.target.name.startsWith('service'))) {
    const dir = join(profileDir, v.target.name)
    const file = readdirSync(dir).find(f => f.endsWith('.cpuprofile'))
    if (file === undefined) {
      text += `\n\n(no profile written for ${v.name})`
      continue
    }
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8'))
    const { totalMs, rows: top } = summarize(profile, { windows: windows[v.name], top: 15 })
    text += `\n\n### CPU profile of ${v.name} (${totalMs.toFixed(0)} ms sampled, ${join(dir, file)})\n\n` +
      table(['function', 'self ms', 'self %', 'total %'], top.map(r => [r.fn, r.selfMs, r.selfPct, r.totalPct]))
  }
  return { text, summary }
}
