// Server CPU per request of POST /notify (single events of 200 bytes, no subscribers) at
// each ref, without Redis and with one, beside the bare Fastify route: what a change to
// the publish path costs, in the unit that decides req/s when the server has a core.
// Each server pinned to the first core, this process (autocannon) and redis-server to the
// last, when taskset exists. A sample is a fixed number of requests; rounds go over every
// target, order reversed every other round. Reports per target the median µs/request
// (schedstat, all threads), the minimum, and the median of each round's bare/target ratio
// (the same round's bare route: slow drifts of this shared machine cancel).
// --variants=NAME:ARGS;... adds, per ref and mode, a copy started with those node
// arguments (space-separated), e.g. --variants='semi32:--max-semi-space-size=32'.
// Usage: node bench/scenarios/request-cost.js REF[,REF...] [--rounds=16] [--requests=25000] [--connections=50] [--modes=local,redis] [--variants=...]
// Bounded: a hard time limit; every process it starts dies with it.
import autocannon from 'autocannon'
import { spawnSync } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { payload } from '../harness/publisher.js'
import { median, table } from '../harness/report.js'
import { cpuNs, startBareFastify, startRedis, startService, useRef } from '../harness/targets.js'

const positional = process.argv.slice(2).filter(a => !a.startsWith('--'))
const flags = Object.fromEntries(process.argv.slice(2).filter(a => a.startsWith('--')).map(a => { const at = a.indexOf('='); return at === -1 ? [a.slice(2), 'true'] : [a.slice(2, at), a.slice(at + 1)] }))
const refs = (positional[0] ?? 'HEAD').split(',')
const ROUNDS = Number(flags.rounds ?? 16)
const REQUESTS = Number(flags.requests ?? 25000)
const CONNECTIONS = Number(flags.connections ?? 50)
const MODES = (flags.modes ?? 'local,redis').split(',')
const VARIANTS = [{ name: '', nodeArgs: [] }, ...(flags.variants ?? '').split(';').filter(v => v !== '').map(v => {
  const at = v.indexOf(':')
  return { name: v.slice(0, at), nodeArgs: v.slice(at + 1).split(' ').filter(a => a !== '') }
})]
setTimeout(() => { console.error('request-cost: time limit'); process.exit(2) }, (ROUNDS * (1 + refs.length * MODES.length * VARIANTS.length) * 10 + 300) * 1000).unref()

const cores = availableParallelism()
const pinned = spawnSync('taskset', ['-V']).status === 0 && cores > 1
const pin = (pid, core) => { if (pinned) spawnSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { stdio: 'ignore' }) }
pin(process.pid, cores - 1)

const body = JSON.stringify({ topic: 'bench', data: payload(0, 200) })
const hammer = (t, amount) => autocannon({
  url: `http://${t.host}:${t.port}${t.publishPath}`,
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body,
  connections: CONNECTIONS,
  amount
})

const targets = []
const stops = []
try {
  const bare = await startBareFastify()
  stops.push(bare)
  targets.push({ name: 'bare Fastify route', t: bare })
  const redis = MODES.includes('redis') ? await startRedis() : null
  if (redis !== null) {
    stops.push(redis)
    for (const pid of redis.pids()) pin(pid, cores - 1)
  }
  for (const ref of refs) {
    const sha = useRef(ref)
    for (const mode of MODES) {
      for (const v of VARIANTS) {
        const t = await startService({ name: `cost-${sha}-${mode}${v.name}`, redisUrl: mode === 'redis' ? redis.url : '', prefix: `bench:${process.pid}:${sha}${v.name}:`, nodeArgs: v.nodeArgs })
        stops.push(t)
        targets.push({ name: `${ref} (${sha})${v.name === '' ? '' : ` ${v.name} (${v.nodeArgs.join(' ')})`} ${mode === 'redis' ? '+ Redis' : 'no Redis'}`, t })
      }
    }
  }
  for (const x of targets) {
    for (const pid of x.t.pids()) pin(pid, 0)
    x.samples = []
    await hammer(x.t, Math.ceil(REQUESTS / 2)) // warm-up, unmeasured
  }
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? targets : [...targets].reverse()
    for (const x of order) {
      const before = cpuNs(x.t.pids())
      const res = await hammer(x.t, REQUESTS)
      const bad = res.non2xx + res.errors + res.timeouts
      if (bad > 0) throw new Error(`${x.name}: ${bad} requests failed`)
      x.samples.push((cpuNs(x.t.pids()) - before) / 1000 / res.requests.total)
    }
    console.error(`round ${r + 1}/${ROUNDS}: ${targets.map(x => `${x.name} ${x.samples[r].toFixed(1)}`).join(', ')}`)
  }
} finally {
  for (const s of stops.reverse()) await s.stop()
}

const bare = targets[0].samples
console.log(`### Server CPU per request, POST /notify single events, ${CONNECTIONS} connections, ${REQUESTS} requests per sample, ${ROUNDS} alternated rounds${pinned ? ', server on core 0, load and Redis on the other' : ''}\n`)
console.log(table(['target', 'µs/request (median)', 'min', 'bare / target (median of rounds)'], targets.map(x => [
  x.name,
  median(x.samples).toFixed(1),
  Math.min(...x.samples).toFixed(1),
  `${median(x.samples.map((us, r) => bare[r] / us)).toFixed(3)}x`
])))
