// An idle instance's background cost: no clients, no events, only its own timers. Each ref
// in turn (order reversed every other round) starts one instance, lets it settle (V8's
// memory reducer runs its start-up collections in the first ~10 s), then counts over
// WINDOW s its CPU (schedstat, every thread) and the times its threads were scheduled in
// (wake-ups). Without Redis and with a private redis-server. Medians over the rounds.
// Usage: node bench/scenarios/idle.js REF[,REF...] [--rounds=3] [--window=20] [--settle=15]
// Bounded: a hard time limit; the servers die with the process.
import { readdirSync, readFileSync } from 'node:fs'
import { startRedis, startService, useRef } from '../harness/targets.js'
import { sleep } from '../harness/measure.js'

const positional = process.argv.slice(2).filter(a => !a.startsWith('--'))
const flags = Object.fromEntries(process.argv.slice(2).filter(a => a.startsWith('--')).map(a => { const [k, v] = a.slice(2).split('='); return [k, v ?? 'true'] }))
const refs = (positional[0] ?? 'HEAD').split(',')
const ROUNDS = Number(flags.rounds ?? 3)
const WINDOW_S = Number(flags.window ?? 20)
const SETTLE_S = Number(flags.settle ?? 15)
setTimeout(() => { console.error('idle: time limit'); process.exit(2) }, (ROUNDS * refs.length * 2 * (WINDOW_S + SETTLE_S + 10) + 120) * 1000).unref()

/** [CPU ns, times scheduled in] summed over the threads of `pid`. */
function sched (pid) {
  let ns = 0
  let runs = 0
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const [cpu, , slices] = readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').trim().split(' ').map(Number)
    ns += cpu
    runs += slices
  }
  return [ns, runs]
}

const median = xs => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2 }
const redis = await startRedis()
const results = {}
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of ['no Redis', 'Redis']) {
      for (const ref of round % 2 === 0 ? refs : [...refs].reverse()) {
        const sha = useRef(ref)
        const service = await startService({ name: `idle-${sha}`, redisUrl: mode === 'Redis' ? redis.url : '', prefix: `idle${round}:` })
        try {
          await sleep(SETTLE_S * 1000)
          const [ns0, runs0] = sched(service.pid)
          await sleep(WINDOW_S * 1000)
          const [ns1, runs1] = sched(service.pid)
          const row = { usPerS: (ns1 - ns0) / 1000 / WINDOW_S, wakesPerS: (runs1 - runs0) / WINDOW_S }
          console.error(`round ${round + 1}, ${mode}, ${ref} (${sha}): ${row.usPerS.toFixed(0)} µs of CPU a second, ${row.wakesPerS.toFixed(1)} wake-ups a second`)
          ;((results[mode] ??= {})[ref] ??= []).push(row)
        } finally {
          await service.stop()
        }
      }
    }
  }
} finally {
  await redis.stop()
}

console.log('\n| mode | ref | CPU µs/s (rounds → median) | wake-ups/s (median) |\n|---|---|---|---|')
for (const [mode, byRef] of Object.entries(results)) {
  for (const [ref, rows] of Object.entries(byRef)) {
    console.log(`| ${mode} | ${ref} | ${rows.map(r => r.usPerS.toFixed(0)).join(' / ')} → **${median(rows.map(r => r.usPerS)).toFixed(0)}** | ${median(rows.map(r => r.wakesPerS)).toFixed(1)} |`)
  }
}
