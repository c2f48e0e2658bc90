// Redis's own CPU per event of the publish script at each ref: the ref's PUBLISH_SCRIPT and
// pack() run as the bus runs them (EVALSHA on a log of HISTORY_SIZE entries, a deadline
// and a tag when the ref's script takes them), K calls in flight, batches of B events of
// 200 bytes, no instance and no HTTP in between: what a change to the script costs Redis.
// redis-server pinned to the last core and this process to the first when taskset exists.
// Refs alternate, order reversed every other round; medians over the rounds.
// Usage: node bench/scenarios/script-cost.js REF[,REF...] [--batches=1,10,100] [--rounds=5] [--seconds=3] [--in-flight=8] [--maxlen=1000]
// Bounded: a hard time limit; redis-server dies with the process.
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import Redis from 'ioredis'
import { freePort, OUT_DIR, useRef } from '../harness/targets.js'
import { median, table } from '../harness/report.js'

const positional = process.argv.slice(2).filter(a => !a.startsWith('--'))
const flags = Object.fromEntries(process.argv.slice(2).filter(a => a.startsWith('--')).map(a => { const [k, v] = a.slice(2).split('='); return [k, v ?? 'true'] }))
const refs = (positional[0] ?? 'HEAD').split(',')
const BATCHES = (flags.batches ?? '1,10,100').split(',').map(Number)
const ROUNDS = Number(flags.rounds ?? 5)
const SECONDS = Number(flags.seconds ?? 3)
const IN_FLIGHT = Number(flags['in-flight'] ?? 8)
const MAXLEN = Number(flags.maxlen ?? 1000)
setTimeout(() => { console.error('script-cost: time limit'); process.exit(2) }, (ROUNDS * refs.length * BATCHES.length * (SECONDS + 1) + 180) * 1000).unref()

const pinned = spawnSync('taskset', ['-V']).status === 0 && availableParallelism() > 1
if (pinned) spawnSync('taskset', ['-p', '-c', '0', String(process.pid)])
const port = await freePort()
const server = spawn(pinned ? 'taskset' : 'redis-server', [...(pinned ? ['-c', String(availableParallelism() - 1), 'redis-server'] : []), '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
process.on('exit', () => server.kill())
const redis = new Redis({ port, host: '127.0.0.1', retryStrategy: times => times > 50 ? null : 100 })
const pid = Number((await redis.info('server')).match(/process_id:(\d+)/)[1])
/** Redis's CPU so far, µs (user + system). */
const cpuUs = () => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ').slice(11, 13).reduce((a, b) => a + Number(b), 0) * 1e6 / 100
const [s0, us0] = await redis.time()
const offset = Number(s0) * 1000 + Math.floor(Number(us0) / 1000) - Date.now()

const targets = []
for (const ref of refs) {
  const sha = useRef(ref)
  const bus = join(OUT_DIR, 'build', sha, 'dist/src/bus')
  const { PUBLISH_SCRIPT } = await import(pathToFileURL(join(bus, 'redis-scripts.js')).href)
  const { pack } = await import(pathToFileURL(join(bus, 'redis-wire.js')).href)
  targets.push({ ref, sha, script: await redis.script('LOAD', PUBLISH_SCRIPT), pack, deadlines: PUBLISH_SCRIPT.includes('deadline') })
}

let calls = 0
async function run (target, batch, ms) {
  const packed = target.pack(Array.from({ length: batch }, (_, i) => ({ event: { topics: ['bench'], body: `data: ${'x'.repeat(200)}\n\n` }, uid: `0a1b2c3d.${i.toString(36)}`, priors: '' })), 'bench-host-1234-abcdef')
  const key = `bench:{script-${target.sha}-${batch}}`
  const end = Date.now() + ms
  let events = 0
  const worker = async () => {
    while (Date.now() < end) {
      const args = [target.script, 1, key, MAXLEN, 86400000, packed]
      if (target.deadlines) args.push(String(Date.now() + offset + 3000), `0a1b2c3d:${(calls++).toString(36)}`)
      await redis.evalsha(...args)
      events += batch
    }
  }
  const c0 = cpuUs()
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  return (cpuUs() - c0) / events
}

const results = new Map()
for (const batch of BATCHES) {
  // Fill each log to MAXLEN first: every later append trims.
  for (const t of targets) while (await redis.xlen(`bench:{script-${t.sha}-${batch}}`) < MAXLEN) await run(t, batch, 200)
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
      const us = await run(t, batch, SECONDS * 1000)
      const key = `${t.ref} ${batch}`
      results.set(key, [...(results.get(key) ?? []), us])
      console.error(`  round ${round + 1} ${t.ref}, batches of ${batch}: ${us.toFixed(2)} µs of Redis CPU per event`)
    }
  }
}
const base = targets[0].ref
const rows = []
for (const batch of BATCHES) {
  for (const t of targets) {
    const list = results.get(`${t.ref} ${batch}`)
    const ratio = median(list) / median(results.get(`${base} ${batch}`))
    rows.push([String(batch), `${t.ref} (${t.sha})`, median(list).toFixed(2), list.map(x => x.toFixed(1)).join(' '), t.ref === base ? '1' : `${ratio.toFixed(2)}x`])
  }
}
console.log(`### Redis CPU per event of the publish script, ${IN_FLIGHT} calls in flight, logs at MAXLEN ${MAXLEN}, median of ${ROUNDS} alternated rounds of ${SECONDS} s${pinned ? ' (redis-server and the caller pinned to a core each)' : ''}\n`)
console.log(table(['events per call', 'ref', 'µs per event (median)', 'rounds', `/ ${base}`], rows))
redis.disconnect()
server.kill()
