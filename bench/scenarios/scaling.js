// The issue-10 scaling table: N = 1, 2, 4 instances on one private redis-server, each with
// one SSE client on its own topic, plus one idle instance (no clients). The same EVENTS
// events, spread over the N topics, published in batches of 100 round-robin to the N
// instances. Per event: Redis output bytes (INFO total_net_output_bytes delta), the
// N instances' CPU and the idle instance's CPU (/proc/<pid>/stat utime+stime deltas).
// Usage: node bench/scenarios/scaling.js REF[,REF...] [EVENTS]; refs alternated per N.
// Bounded: every wait has a timeout, and the servers die with the process.
import http from 'node:http'
import net from 'node:net'
import { readFileSync } from 'node:fs'
import { startRedis, startService, useRef } from '../targets.js'

const refs = (process.argv[2] ?? 'HEAD').split(',')
const EVENTS = Number(process.argv[3] ?? 2000)
const TICK = 100 // clock ticks per second (getconf CLK_TCK)
setTimeout(() => { console.error('scaling: time limit'); process.exit(2) }, 240000).unref()

const cpuMs = pid => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 1000 / TICK }
function redisOut (port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }); let buf = ''
    s.on('connect', () => s.write('INFO stats\r\n'))
    s.on('data', d => { buf += d; const m = /total_net_output_bytes:(\d+)/.exec(buf); if (m && buf.includes('\r\n', buf.indexOf(m[0]))) { s.destroy(); resolve(Number(m[1])) } })
    s.on('error', reject)
  })
}
function client (inst, topic) {
  const c = { got: 0, req: null }
  return new Promise((resolve, reject) => {
    c.req = http.get({ host: inst.host, port: inst.port, path: `/stream?topic=${topic}` }, res => {
      let tail = ''
      res.on('data', d => { const t = tail + d; const parts = t.split('\n'); tail = parts.pop(); for (const l of parts) if (l.startsWith('data:')) c.got++ })
      resolve(c)
    })
    c.req.on('error', reject)
  })
}
function post (inst, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: inst.host, port: inst.port, path: '/notify', method: 'POST', headers: { 'content-type': 'application/json' } }, res => { res.resume(); res.on('end', () => resolve(res.statusCode)) })
    req.on('error', reject); req.end(body)
  })
}
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function one (ref, n) {
  const sha = useRef(ref)
  const redis = await startRedis()
  const prefix = `scale:${process.pid}:`
  const insts = []
  try {
    for (let i = 0; i <= n; i++) insts.push(await startService({ name: `scale-${i}`, redisUrl: redis.url, prefix }))
    const clients = await Promise.all(insts.slice(0, n).map((s, i) => client(s, `t${i}`)))
    await sleep(3000) // subscriptions settle (new design: 2 s linger)
    const payload = 'x'.repeat(200)
    const bodies = []
    for (let b = 0; b < EVENTS / 100; b++) bodies.push(JSON.stringify(Array.from({ length: 100 }, (_, k) => ({ topic: `t${(b * 100 + k) % n}`, data: payload }))))
    const out0 = await redisOut(redis.port)
    const cpu0 = insts.map(s => cpuMs(s.pid))
    const statuses = []
    for (let b = 0; b < bodies.length; b++) statuses.push(await post(insts[b % n], bodies[b]))
    const deadline = Date.now() + 30000
    while (clients.reduce((x, c) => x + c.got, 0) < EVENTS && Date.now() < deadline) await sleep(50)
    await sleep(500)
    const out1 = await redisOut(redis.port)
    const cpu = insts.map((s, i) => cpuMs(s.pid) - cpu0[i])
    for (const c of clients) c.req.destroy()
    const got = clients.reduce((x, c) => x + c.got, 0)
    const busy = cpu.slice(0, n).reduce((a, b) => a + b, 0)
    const r = { ref: sha, n, got, statuses: [...new Set(statuses)].join('/'), redisBytesPerEvent: (out1 - out0) / EVENTS, cpuUsPerEvent: busy * 1000 / EVENTS, idleCpuUsPerEvent: cpu[n] * 1000 / EVENTS }
    console.log(JSON.stringify(r))
    return r
  } finally {
    for (const s of insts) await s.stop()
    await redis.stop()
  }
}

for (const n of [1, 2, 4]) for (const ref of (n === 2 ? [...refs].reverse() : refs)) await one(ref, n)
process.exit(0)
