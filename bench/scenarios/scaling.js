// The issue-10 scaling table, and the publish path on several instances at once.
//
// Table (default): N = 1, 2, 4, 8 instances on one private redis-server (or, with
// --cluster, on a private 3-master Redis Cluster), each with TOPICS SSE clients, one per
// topic of its own (8 by default, so a cluster spreads them over its masters), plus one
// idle instance (no clients). The same EVENTS events, spread round-robin over the N x
// TOPICS topics, are published in each mode: `batch` = POSTs of 100 events one after
// the other, round-robin to the N instances; `single` = one event per POST, IN_FLIGHT
// POSTs in flight, each to an instance other than the topic's own in turn. Per event:
// Redis output bytes (INFO total_net_output_bytes, summed over every redis-server), each
// redis-server's CPU, the N instances' CPU, the idle instance's CPU and the bytes it read
// (/proc/<pid>/io rchar). CPU is /proc/<pid>/stat utime+stime (10 ms ticks: 20,000
// events make 1 tick 0.5 µs/event), with /proc/<pid>/task/*/schedstat (ns) beside it.
// Every client must get exactly its topic's events.
//
// --autocannon: N = 1, 2, 4 instances at once, no SSE clients, one autocannon per
// instance (CONNECTIONS connections, DURATION s) against POST /notify, single events and
// batches of 100, over AC_TOPICS topics (64 by default: every master gets some).
// Aggregate requests/s and events/s, non-2xx/errors, each redis-server's CPU per event.
//
// Usage: node bench/scenarios/scaling.js REF[,REF...] [EVENTS] [--cluster] [--autocannon]
//   [--ns=1,2,4,8] [--modes=batch,single] [--topics=8] [--in-flight=4] [--passes=1]
//   [--duration=5] [--connections=16] [--ac-topics=64] [--limit=SECONDS] [--warmup=EVENTS]
// --warmup publishes that many events first, unmeasured, in the same pattern: with few
// events per instance (20,000 over N=8) the instances' code is still cold, and the table
// measures V8 warming up (N=1 reads 122 µs/event at 20,000 events and 48.6 at 200,000).
// Refs are alternated (order reversed every other N and every other pass); medians over
// passes at the end. The old design (242b258) has no cluster mode: --cluster is for HEAD.
// Bounded: every wait has a timeout, a hard time limit ends the run, and the servers die
// with the process (targets.js kills its children at exit).
import autocannon from 'autocannon'
import http from 'node:http'
import { readFileSync } from 'node:fs'
import { median, table } from '../harness/report.js'
// Which slot a key is in, hash tags included: the calculation ioredis itself uses.
import keySlot from 'cluster-key-slot'
import { cpuNs, redisCommand, startRedis, startRedisCluster, startService, useRef } from '../harness/targets.js'

const positional = process.argv.slice(2).filter(a => !a.startsWith('--'))
const flags = Object.fromEntries(process.argv.slice(2).filter(a => a.startsWith('--')).map(a => { const [k, v] = a.slice(2).split('='); return [k, v ?? 'true'] }))
const refs = (positional[0] ?? 'HEAD').split(',')
const EVENTS = Number(positional[1] ?? 20000)
const CLUSTER = flags.cluster === 'true'
const AUTOCANNON = flags.autocannon === 'true'
const NS = (flags.ns ?? (AUTOCANNON ? '1,2,4' : '1,2,4,8')).split(',').map(Number)
const MODES = (flags.modes ?? 'batch,single').split(',')
const TOPICS = Number(flags.topics ?? 8)
const IN_FLIGHT = Number(flags['in-flight'] ?? 4)
const PASSES = Number(flags.passes ?? 1)
const DURATION = Number(flags.duration ?? 5)
const CONNECTIONS = Number(flags.connections ?? 16)
const AC_TOPICS = Number(flags['ac-topics'] ?? 64)
const LIMIT_S = Number(flags.limit ?? 1500)
// Events published unmeasured before each mode (batches: a multiple of 100).
const WARMUP = Number(flags.warmup ?? 0)
const BATCH = 100
const PAYLOAD = 'x'.repeat(200)
const TICK = 100 // clock ticks per second (getconf CLK_TCK)
setTimeout(() => { console.error(`scaling: time limit (${LIMIT_S} s)`); process.exit(2) }, LIMIT_S * 1000).unref()

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const tickMs = pid => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 1000 / TICK }
const rchar = pid => Number(/rchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))[1])
const outBytes = async port => Number(/total_net_output_bytes:(\d+)/.exec(await redisCommand(port, ['INFO', 'stats']))[1])
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
const round = (x, d = 2) => Number(x.toFixed(d))

/** The redis-server processes of a run: one, or each master of the cluster. */
async function startBackend () {
  if (!CLUSTER) {
    const r = await startRedis()
    return { url: r.url, env: {}, procs: [{ label: 'redis', port: r.port, pid: r.pid }], masterOf: () => r.port, stop: () => r.stop() }
  }
  const c = await startRedisCluster({ masters: 3, replicas: 0 })
  return {
    url: c.url,
    env: { REDIS_MODE: 'cluster' },
    procs: c.nodes.map((n, i) => ({ label: `${n.role === 'master' ? 'm' : 'r'}${i + 1}`, port: n.port, pid: n.pid })),
    masterOf: topic => c.masterForSlot(keySlot(topic)),
    stop: () => c.stop()
  }
}

async function startInstances (backend, count, tag) {
  const prefix = `scale:${process.pid}:${tag}:`
  // In parallel, then checked: a failed start leaves none running.
  const started = await Promise.allSettled(Array.from({ length: count }, (_, i) => startService({ name: `scale-${tag}-${i}`, redisUrl: backend.url, prefix, env: backend.env })))
  const insts = started.filter(s => s.status === 'fulfilled').map(s => s.value)
  const failed = started.find(s => s.status === 'rejected')
  if (failed !== undefined) { for (const s of insts) await s.stop(); throw failed.reason }
  return insts
}

function client (inst, topic) {
  const c = { topic, got: 0, req: null }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stream ${topic} did not answer within 10 s`)), 10000)
    c.req = http.get({ host: inst.host, port: inst.port, path: `/stream?topic=${topic}` }, res => {
      clearTimeout(timer)
      if (res.statusCode !== 200) return reject(new Error(`stream ${topic}: ${res.statusCode}`))
      let tail = ''
      res.on('data', d => { const t = tail + d; const parts = t.split('\n'); tail = parts.pop(); for (const l of parts) if (l.startsWith('data:')) c.got++ })
      res.on('error', () => {})
      resolve(c)
    })
    c.req.on('error', reject)
  })
}

function post (inst, body) {
  return new Promise(resolve => {
    const req = http.request({ host: inst.host, port: inst.port, path: '/notify', method: 'POST', agent, headers: { 'content-type': 'application/json' }, timeout: 30000 }, res => {
      res.resume(); res.on('end', () => resolve(res.statusCode))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', () => resolve('error'))
    req.end(body)
  })
}

const snapshot = async (procs, insts) => ({
  out: (await Promise.all(procs.map(p => outBytes(p.port)))).reduce((a, b) => a + b, 0),
  redisTick: procs.map(p => tickMs(p.pid)),
  redisNs: procs.map(p => cpuNs([p.pid])),
  instTick: insts.map(s => tickMs(s.pid)),
  instNs: insts.map(s => cpuNs([s.pid])),
  rchar: insts.map(s => rchar(s.pid)),
  at: Date.now()
})

/** Until every client has its count (or the deadline); the shortfall per client. */
async function delivered (clients, expected, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  const done = () => clients.every((c, i) => c.got >= expected[i])
  while (!done() && Date.now() < deadline) await sleep(50)
  await sleep(500) // late or extra events show up too
  return clients.map((c, i) => c.got - expected[i])
}

// ---- the table -------------------------------------------------------------

async function tableRun (ref, n) {
  const sha = useRef(ref)
  const backend = await startBackend()
  let insts = []
  let clients = []
  const rows = []
  try {
    insts = await startInstances(backend, n + 1, `n${n}`)
    const topics = [] // topic index j: instance j % n, its (j / n)th topic
    for (let j = 0; j < n * TOPICS; j++) topics.push({ name: `i${j % n}t${Math.floor(j / n)}`, inst: j % n })
    clients = await Promise.all(topics.map(t => client(insts[t.inst], t.name)))
    // Warm-up: one event per topic, every client must get it (its subscription is live).
    await post(insts[0], JSON.stringify(topics.map(t => ({ topic: t.name, data: PAYLOAD }))))
    const warm = await delivered(clients, topics.map(() => 1), 20000)
    if (warm.some(d => d !== 0)) throw new Error(`warm-up: per-client shortfall/excess ${warm.join(',')}`)
    // The idle instance's own background CPU, over a quiet 2 s.
    const q0 = { tick: tickMs(insts[n].pid), ns: cpuNs([insts[n].pid]), at: Date.now() }
    await sleep(2000)
    const idleBaselineUsPerS = (cpuNs([insts[n].pid]) - q0.ns) / 1e3 / ((Date.now() - q0.at) / 1000)
    const perMaster = new Map()
    for (const p of backend.procs) perMaster.set(p.port, 0)
    for (let e = 0; e < EVENTS; e++) { const m = backend.masterOf(topics[e % topics.length].name); perMaster.set(m, perMaster.get(m) + 1) }
    const expectedOf = events => topics.map((_, j) => Math.floor(events / topics.length) + (j < events % topics.length ? 1 : 0))
    const publishAll = async (mode, events, count) => {
      if (mode === 'batch') {
        for (let b = 0; b < events / BATCH; b++) {
          count(await post(insts[b % n], JSON.stringify(Array.from({ length: BATCH }, (_, k) => ({ topic: topics[(b * BATCH + k) % topics.length].name, data: PAYLOAD })))))
        }
      } else {
        let next = 0
        await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
          while (next < events) {
            const j = next++
            // Not the topic's own instance each time: the publisher cycles over all N.
            count(await post(insts[(j + Math.floor(j / n)) % n], JSON.stringify({ topic: topics[j % topics.length].name, data: PAYLOAD })))
          }
        }))
      }
    }
    for (const mode of MODES) {
      // Unmeasured first, the same pattern: every instance's code warm (V8 optimizes what
      // runs often), as in a service that has been running.
      if (WARMUP > 0) {
        for (const c of clients) c.got = 0
        await publishAll(mode, WARMUP, () => {})
        const short = await delivered(clients, expectedOf(WARMUP), 60000)
        if (short.some(d => d !== 0)) throw new Error(`warm-up (${mode}): per-client shortfall/excess ${short.join(',')}`)
      }
      for (const c of clients) c.got = 0
      const expected = expectedOf(EVENTS)
      const statuses = {}
      const count = s => { statuses[s] = (statuses[s] ?? 0) + 1 }
      const s0 = await snapshot(backend.procs, insts)
      await publishAll(mode, EVENTS, count)
      const publishMs = Date.now() - s0.at
      const diff = await delivered(clients, expected, 60000)
      const s1 = await snapshot(backend.procs, insts)
      const busyTick = s1.instTick.slice(0, n).reduce((a, v, i) => a + v - s0.instTick[i], 0)
      const busyNs = s1.instNs.slice(0, n).reduce((a, v, i) => a + v - s0.instNs[i], 0)
      const r = {
        table: CLUSTER ? 'cluster' : 'standalone',
        ref: sha,
        n,
        mode,
        events: EVENTS,
        warmup: WARMUP,
        topics: topics.length,
        got: clients.reduce((a, c) => a + c.got, 0),
        missing: diff.filter(d => d < 0).reduce((a, d) => a - d, 0),
        extra: diff.filter(d => d > 0).reduce((a, d) => a + d, 0),
        statuses,
        publishMs,
        redisBytesPerEvent: round((s1.out - s0.out) / EVENTS, 1),
        redisUsPerEvent: Object.fromEntries(backend.procs.map((p, i) => [p.label, round((s1.redisTick[i] - s0.redisTick[i]) * 1000 / EVENTS)])),
        redisNsUsPerEvent: Object.fromEntries(backend.procs.map((p, i) => [p.label, round((s1.redisNs[i] - s0.redisNs[i]) / 1e3 / EVENTS)])),
        redisEventShare: Object.fromEntries(backend.procs.map(p => [p.label, round(perMaster.get(p.port) / EVENTS)])),
        cpuUsPerEvent: round(busyTick * 1000 / EVENTS),
        cpuNsUsPerEvent: round(busyNs / 1e3 / EVENTS),
        idleCpuUsPerEvent: round((s1.instTick[n] - s0.instTick[n]) * 1000 / EVENTS),
        idleCpuNsUsPerEvent: round((s1.instNs[n] - s0.instNs[n]) / 1e3 / EVENTS, 3),
        // Less its background (timers, slot-map checks) over the same window: what events cost it.
        idleNetUsPerEvent: round(((s1.instNs[n] - s0.instNs[n]) / 1e3 - idleBaselineUsPerS * (s1.at - s0.at) / 1000) / EVENTS, 3),
        idleBytesPerEvent: round((s1.rchar[n] - s0.rchar[n]) / EVENTS, 2),
        idleBaselineUsPerS: round(idleBaselineUsPerS, 0),
        windowMs: s1.at - s0.at
      }
      console.log(JSON.stringify(r))
      rows.push(r)
    }
  } finally {
    for (const c of clients) c.req.destroy()
    for (const s of insts) await s.stop()
    await backend.stop()
  }
  return rows
}

// ---- autocannon on N instances at once ---------------------------------------

function cannon (inst, bodies) {
  let i = 0
  return autocannon({
    url: `http://${inst.host}:${inst.port}/notify`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    connections: CONNECTIONS,
    pipelining: 1,
    duration: DURATION,
    requests: [{ setupRequest: req => ({ ...req, body: bodies[i++ % bodies.length] }) }]
  })
}

async function cannonRun (ref, n) {
  const sha = useRef(ref)
  const backend = await startBackend()
  let insts = []
  const rows = []
  try {
    insts = await startInstances(backend, n, `ac${n}`)
    const names = Array.from({ length: AC_TOPICS }, (_, j) => `a${j}`)
    const bodies = {
      single: names.map(t => JSON.stringify({ topic: t, data: PAYLOAD })),
      batch: names.map((_, b) => JSON.stringify(Array.from({ length: BATCH }, (_, k) => ({ topic: names[(b * BATCH + k) % names.length], data: PAYLOAD }))))
    }
    const perEvent = { single: 1, batch: BATCH }
    const share = new Map(backend.procs.map(p => [p.port, 0]))
    for (const t of names) share.set(backend.masterOf(t), share.get(backend.masterOf(t)) + 1)
    for (const mode of MODES) {
      // Warm-up: 1 s on every instance at once.
      await Promise.all(insts.map(s => autocannon({ url: `http://${s.host}:${s.port}/notify`, method: 'POST', headers: { 'content-type': 'application/json' }, body: bodies[mode][0], connections: CONNECTIONS, duration: 1 })))
      const s0 = await snapshot(backend.procs, insts)
      const self0 = process.cpuUsage()
      const res = await Promise.all(insts.map(s => cannon(s, bodies[mode])))
      const self = process.cpuUsage(self0)
      const s1 = await snapshot(backend.procs, insts)
      const ok = res.reduce((a, x) => a + x['2xx'], 0)
      const events = ok * perEvent[mode]
      const secs = (s1.at - s0.at) / 1000
      const r = {
        table: `autocannon-${CLUSTER ? 'cluster' : 'standalone'}`,
        ref: sha,
        n,
        mode,
        topics: AC_TOPICS,
        reqPerSec: round(res.reduce((a, x) => a + x.requests.average, 0), 0),
        eventsPerSec: round(res.reduce((a, x) => a + x.requests.average, 0) * perEvent[mode], 0),
        ok,
        non2xx: res.reduce((a, x) => a + x.non2xx, 0),
        errors: res.reduce((a, x) => a + x.errors + x.timeouts, 0),
        p99ms: Math.max(...res.map(x => x.latency.p99)),
        redisUsPerEvent: Object.fromEntries(backend.procs.map((p, i) => [p.label, round((s1.redisTick[i] - s0.redisTick[i]) * 1000 / events, 3)])),
        redisNsUsPerEvent: Object.fromEntries(backend.procs.map((p, i) => [p.label, round((s1.redisNs[i] - s0.redisNs[i]) / 1e3 / events, 3)])),
        redisCpuPct: Object.fromEntries(backend.procs.map((p, i) => [p.label, round((s1.redisNs[i] - s0.redisNs[i]) / 1e7 / secs, 0)])),
        topicShare: Object.fromEntries(backend.procs.map(p => [p.label, round(share.get(p.port) / AC_TOPICS)])),
        instUsPerEvent: round(s1.instNs.reduce((a, v, i) => a + v - s0.instNs[i], 0) / 1e3 / events, 3),
        instCpuPct: round(s1.instNs.reduce((a, v, i) => a + v - s0.instNs[i], 0) / 1e7 / secs, 0),
        benchCpuPct: round((self.user + self.system) / 1e4 / secs, 0),
        redisBytesPerEvent: round((s1.out - s0.out) / events, 1)
      }
      console.log(JSON.stringify(r))
      rows.push(r)
    }
  } finally {
    for (const s of insts) await s.stop()
    await backend.stop()
  }
  return rows
}

// ---- runs and medians ---------------------------------------------------------

const all = []
for (let p = 0; p < PASSES; p++) {
  for (const [k, n] of NS.entries()) {
    const order = (k + p) % 2 === 1 ? [...refs].reverse() : refs
    for (const ref of order) all.push(...await (AUTOCANNON ? cannonRun : tableRun)(ref, n))
  }
}

const groups = new Map()
for (const r of all) {
  const key = `${r.ref} ${r.n} ${r.mode}`
  if (!groups.has(key)) groups.set(key, [])
  groups.get(key).push(r)
}
const med = (list, f) => round(median(list.map(f)), 2)
const perProc = (list, field) => Object.keys(list[0][field]).map(l => `${l} ${med(list, r => r[field][l])}`).join(', ')
let text
if (!AUTOCANNON) {
  const rows = [...groups.values()].map(list => {
    const r = list[0]
    const bad = list.reduce((a, x) => a + x.missing + x.extra + Object.entries(x.statuses).filter(([s]) => s !== '202').reduce((b, [, c]) => b + c, 0), 0)
    return [r.ref, r.n, r.mode, list.map(x => x.cpuUsPerEvent).join(' '), med(list, x => x.cpuUsPerEvent), med(list, x => x.cpuNsUsPerEvent),
      list.map(x => x.idleCpuUsPerEvent).join(' '), med(list, x => x.idleCpuNsUsPerEvent), med(list, x => x.idleNetUsPerEvent), med(list, x => x.idleBytesPerEvent),
      med(list, x => x.redisBytesPerEvent), perProc(list, 'redisUsPerEvent'), perProc(list, 'redisNsUsPerEvent'), bad]
  })
  text = table(['ref', 'N', 'mode', 'N instances µs/event (ticks, per pass)', 'median', 'schedstat', 'idle µs/event (ticks)', 'idle schedstat', 'idle less background', 'idle B/event read', 'Redis out B/event', 'Redis µs/event (ticks)', 'Redis µs/event (schedstat)', 'missing+extra+non-202'], rows)
} else {
  const rows = [...groups.values()].map(list => {
    const r = list[0]
    return [r.ref, r.n, r.mode, list.map(x => x.reqPerSec).join(' '), med(list, x => x.reqPerSec), med(list, x => x.eventsPerSec),
      list.reduce((a, x) => a + x.non2xx + x.errors, 0), perProc(list, 'redisNsUsPerEvent'), perProc(list, 'redisCpuPct'), med(list, x => x.instUsPerEvent), med(list, x => x.benchCpuPct)]
  })
  text = table(['ref', 'N', 'mode', 'req/s (per pass)', 'median req/s', 'median events/s', 'non-2xx+errors', 'Redis µs/event (schedstat)', 'Redis CPU %', 'instances µs/event', 'bench CPU %'], rows)
}
console.log(`\n${CLUSTER ? '3-master cluster' : 'one redis-server'}, ${AUTOCANNON ? `autocannon ${CONNECTIONS} connections x ${DURATION} s per instance, ${AC_TOPICS} topics` : `${EVENTS} events, ${TOPICS} topics per instance`}, ${PASSES} pass(es)\n\n${text}`)
process.exit(0)
