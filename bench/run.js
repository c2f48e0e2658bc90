// npm run bench [-- --full] [-- --scenarios=fanout,cluster,capacity,publish,slow,memory,storm,steady] ...
// Runs the scenarios one after another on loopback only, prints markdown tables and
// keeps them (and the raw numbers) in bench/out/. Quick sizes by default; --full for
// the sizes of the issue. Every count and duration is bounded: it stops by itself.
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join, relative } from 'node:path'
import { parseArgs } from 'node:util'
import { writeCharts } from './charts.js'
import { hardFdLimit, nchanMissing, OUT_DIR, ROOT, serviceBuilt, useRef } from './harness/targets.js'
import { capacity, cluster } from './scenarios/cluster.js'
import { fanout } from './scenarios/fanout.js'
import { publishPath } from './scenarios/publish-path.js'
import { redisMemory } from './scenarios/redis-memory.js'
import { slowClient } from './scenarios/slow-client.js'
import { steady } from './scenarios/steady.js'
import { storm } from './scenarios/storm.js'

const QUICK = {
  scenarios: 'fanout,cluster,publish,slow',
  targets: 'service,naive,nchan',
  clients: 2000,
  events: 100,
  rounds: 3,
  clusterClients: 2000,
  clusterEvents: 200,
  clusterRounds: 2,
  clusterTargets: 'service,nchan',
  capacityClients: 4000,
  capacityEvents: 10,
  duration: 3,
  publishRounds: 2,
  slowRounds: 2,
  memoryTopics: 10000,
  stormClients: 2000,
  steadyClients: 2000,
  steadySeconds: 5
}
const FULL = {
  scenarios: 'fanout,cluster,capacity,publish,slow',
  targets: 'service,service-redis,naive,nchan',
  clients: 10000,
  events: 100,
  rounds: 5,
  clusterClients: 10000,
  clusterEvents: 500,
  clusterRounds: 3,
  clusterTargets: 'service,nchan',
  capacityClients: 36000,
  capacityEvents: 20,
  duration: 10,
  publishRounds: 3,
  slowRounds: 4,
  memoryTopics: 100000,
  stormClients: 10000,
  steadyClients: 10000,
  steadySeconds: 30
}

const HELP = `npm run bench -- [options]
  --full                 the issue's sizes (10k clients, 36k capacity, 10 s autocannon runs)
  --scenarios=LIST       fanout,cluster,capacity,publish,slow,memory,storm,steady (quick: ${QUICK.scenarios})
  --targets=LIST         fan-out targets: service,service-redis,naive,nchan
  --clients=N            fan-out clients per target          (quick ${QUICK.clients}, full ${FULL.clients})
  --events=E             events per burst                    (${QUICK.events})
  --bytes=P              payload bytes per event             (200)
  --rate=R               publish at R events/s instead of a burst
  --concurrency=C        POSTs in flight while publishing    (16)
  --rounds=R             alternated fan-out rounds           (quick ${QUICK.rounds}, full ${FULL.rounds})
  --idle-ms=MS           quiet time before the one-event run (1000)
  --cluster-clients=N --cluster-events=E --cluster-rounds=R
                         cluster scenario: N clients per target, split over its two instances
  --cluster-targets=LIST two instances + Redis of: service,nchan (both; nchan = two nginx on one Redis),
                         alternated round by round
  --cluster-timeout=S    longest wait for one cluster run's deliveries (default max(120, N*E/20000) s)
  --capacity-clients=N --capacity-events=E
  --duration=S --publish-rounds=R --connections=C --batch=B   (autocannon runs)
  --slow-clients=N --slow-count=K --slow-events=E --slow-bytes=P --slow-rate=R --slow-rounds=R --slow-buffer=B
                         slow scenario: N normal clients (1000), K that stop reading (2), E events (4000)
                         of P bytes (2048) at R/s (500), R alternated rounds with/without (quick ${QUICK.slowRounds},
                         full ${FULL.slowRounds}), CLIENT_BUFFER_BYTES B (262144)
  --memory-topics=N --memory-events=LIST --memory-bytes=P --memory-ttl-ms=MS
                         memory scenario: Redis bytes per topic for N topics (quick ${QUICK.memoryTopics}, full
                         ${FULL.memoryTopics}) with each count of events of LIST (1,2,10) of P-byte data (50),
                         HISTORY_TTL_MS MS (86400000)
  --storm-clients=N --storm-missed=M --storm-live=L --storm-live-rate=R --storm-concurrency=C --storm-timeout=S
                         storm scenario: N clients (quick ${QUICK.stormClients}, full ${FULL.stormClients}) resume at once on two
                         instances, M events back (100), while L live events (50) are published at R/s (10);
                         C connects in flight (400); S s at most for all to complete (300);
                         --storm-on=one puts every client on one instance (the other died), both (default) splits them
  --steady-targets=LIST --steady-clients=N --steady-seconds=S --steady-p99=MS --steady-start=R --steady-max=R --steady-steps=K
                         steady scenario: the highest rate each of LIST (service,nchan; also naive) sustains with N clients
                         (quick ${QUICK.steadyClients}, full ${FULL.steadyClients}) for S s (quick ${QUICK.steadySeconds}, full ${FULL.steadySeconds}):
                         all delivered, p99 <= MS (250); rates double from R (4) up to at most R (4096), then K (3)
                         halvings of the gap; then both at half the slowest one's rate (p99, p99.9)
  --nchan-workers=W      nginx worker processes for nchan     (1: one core, like one Node process)
  --ref=GIT_REF          measure that commit (built into bench/out/build/) instead of dist/
  --profile              run the services under node --cpu-prof; top self time of the bursts
Environment: BENCH_SAMPLE_EVERY (full parse of one frame in N, 1000),
  BENCH_SERVICE_ENV="NAME=value ..." (settings for every service instance),
  BENCH_CLIENT_NODE_ARGS (node flags of the client processes, e.g. --cpu-prof),
  BENCH_TIME_LIMIT_S (hard limit of the whole run, 3600).`

function options () {
  const { values } = parseArgs({
    options: {
      full: { type: 'boolean', default: false },
      ref: { type: 'string' },
      help: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      scenarios: { type: 'string' },
      targets: { type: 'string' },
      clients: { type: 'string' },
      events: { type: 'string' },
      bytes: { type: 'string', default: '200' },
      rate: { type: 'string', default: '0' },
      concurrency: { type: 'string', default: '16' },
      rounds: { type: 'string' },
      'idle-ms': { type: 'string', default: '1000' },
      'cluster-clients': { type: 'string' },
      'cluster-events': { type: 'string' },
      'cluster-rounds': { type: 'string' },
      'cluster-targets': { type: 'string' },
      'cluster-timeout': { type: 'string', default: '0' },
      'capacity-clients': { type: 'string' },
      'capacity-events': { type: 'string' },
      duration: { type: 'string' },
      'publish-rounds': { type: 'string' },
      connections: { type: 'string', default: '32' },
      batch: { type: 'string', default: '100' },
      'nchan-workers': { type: 'string', default: '1' },
      'max-clients': { type: 'string', default: '20000' },
      'slow-clients': { type: 'string', default: '1000' },
      'slow-count': { type: 'string', default: '2' },
      'slow-events': { type: 'string', default: '4000' },
      'slow-bytes': { type: 'string', default: '2048' },
      'slow-rate': { type: 'string', default: '500' },
      'slow-rounds': { type: 'string' },
      'slow-buffer': { type: 'string', default: '262144' },
      'memory-topics': { type: 'string' },
      'memory-events': { type: 'string', default: '1,2,10' },
      'memory-bytes': { type: 'string', default: '50' },
      'memory-ttl-ms': { type: 'string', default: '86400000' },
      'storm-clients': { type: 'string' },
      'storm-on': { type: 'string', default: 'both' },
      'steady-targets': { type: 'string', default: 'service,nchan' },
      'steady-clients': { type: 'string' },
      'steady-seconds': { type: 'string' },
      'steady-p99': { type: 'string', default: '250' },
      'steady-start': { type: 'string', default: '4' },
      'steady-max': { type: 'string', default: '4096' },
      'steady-steps': { type: 'string', default: '3' },
      'storm-missed': { type: 'string', default: '100' },
      'storm-live': { type: 'string', default: '50' },
      'storm-live-rate': { type: 'string', default: '10' },
      'storm-concurrency': { type: 'string', default: '400' },
      'storm-timeout': { type: 'string', default: '300' }
    }
  })
  if (values.help) {
    console.log(HELP)
    process.exit(0)
  }
  const d = values.full ? FULL : QUICK
  const num = (v, fallback) => {
    const n = Number(v ?? fallback)
    if (!Number.isFinite(n) || n < 0) throw new Error(`not a number: ${v}`)
    return n
  }
  return {
    full: values.full,
    ref: values.ref,
    profile: values.profile,
    scenarios: (values.scenarios ?? d.scenarios).split(','),
    targets: (values.targets ?? (values.profile ? 'service,service-redis' : d.targets)).split(','),
    clients: num(values.clients, d.clients),
    events: num(values.events, d.events),
    bytes: num(values.bytes),
    rate: num(values.rate),
    concurrency: num(values.concurrency),
    rounds: num(values.rounds, d.rounds),
    idleMs: num(values['idle-ms']),
    clusterClients: num(values['cluster-clients'], d.clusterClients),
    clusterEvents: num(values['cluster-events'], d.clusterEvents),
    clusterRounds: num(values['cluster-rounds'], d.clusterRounds),
    clusterTargets: (values['cluster-targets'] ?? d.clusterTargets).split(',').filter(Boolean),
    clusterTimeout: num(values['cluster-timeout']),
    capacityClients: num(values['capacity-clients'], d.capacityClients),
    capacityEvents: num(values['capacity-events'], d.capacityEvents),
    duration: num(values.duration, d.duration),
    rounds2: num(values['publish-rounds'], d.publishRounds),
    connections: num(values.connections),
    batch: num(values.batch),
    nchanWorkers: num(values['nchan-workers']),
    maxClients: num(values['max-clients']),
    slowClients: num(values['slow-clients']),
    slowCount: num(values['slow-count']),
    slowEvents: num(values['slow-events']),
    slowBytes: num(values['slow-bytes']),
    slowRate: num(values['slow-rate']),
    slowRounds: num(values['slow-rounds'], d.slowRounds),
    slowBuffer: num(values['slow-buffer']),
    memoryTopics: num(values['memory-topics'], d.memoryTopics),
    memoryEvents: values['memory-events'].split(',').map(v => num(v)),
    memoryBytes: num(values['memory-bytes']),
    memoryTtlMs: num(values['memory-ttl-ms']),
    stormClients: num(values['storm-clients'], d.stormClients),
    stormOn: values['storm-on'],
    steadyTargets: values['steady-targets'].split(',').filter(Boolean),
    steadyClients: num(values['steady-clients'], d.steadyClients),
    steadySeconds: num(values['steady-seconds'], d.steadySeconds),
    steadyP99: num(values['steady-p99']),
    steadyStart: num(values['steady-start']),
    steadyMax: num(values['steady-max']),
    steadySteps: num(values['steady-steps']),
    stormMissed: num(values['storm-missed']),
    stormLive: num(values['storm-live']),
    stormLiveRate: num(values['storm-live-rate']),
    stormConcurrency: num(values['storm-concurrency']),
    stormTimeout: num(values['storm-timeout'])
  }
}

function sh (cmd) {
  const r = spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', cwd: ROOT })
  return (r.stdout + r.stderr).trim()
}

function machine () {
  return [
    `- CPU: ${os.availableParallelism()} × ${os.cpus()[0]?.model ?? 'unknown'} (nproc ${sh('nproc')}), load average ${os.loadavg().map(x => x.toFixed(2)).join(' ')} at start`,
    `- Memory (free -h): ${sh('free -h | sed -n 2p').replace(/\s+/g, ' ')}`,
    `- Kernel ${os.release()}, Node ${process.version}, ${sh('redis-server --version | cut -d" " -f1-3')}, ${sh('nginx -v 2>&1')}, nchan module ${nchanMissing() === null ? 'installed' : 'missing'}`,
    `- fd limit: soft ${sh('ulimit -n')}, hard ${hardFdLimit()}; service instances run at ulimit -n 20000`,
    `- Work tree at ${sh('git rev-parse --short HEAD')}${sh('git status --porcelain -- src plugins routes') === '' ? '' : ' (src/plugins/routes modified)'}`
  ].join('\n')
}

const SCENARIOS = {
  fanout,
  cluster,
  capacity,
  publish: (opts, log) => publishPath({ ...opts, rounds: opts.rounds2 }, log),
  slow: slowClient,
  memory: redisMemory,
  storm,
  steady
}

async function main () {
  const opts = options()
  const measured = opts.ref === undefined ? 'dist/ (as built by npm run build)' : `commit ${useRef(opts.ref)} (--ref ${opts.ref}, built into bench/out/build/)`
  if (!serviceBuilt()) {
    console.error('bench: dist/server.js is missing: run `npm run build` first')
    process.exit(1)
  }
  for (const s of opts.scenarios) {
    if (SCENARIOS[s] === undefined) throw new Error(`unknown scenario ${s} (${Object.keys(SCENARIOS).join(', ')})`)
  }
  mkdirSync(OUT_DIR, { recursive: true })
  const started = new Date()
  const log = line => console.error(line)
  const header = `## Run of ${started.toISOString()} (${opts.full ? 'full' : 'quick'}${opts.profile ? ', profiled' : ''})\n\n` +
    `Command: npm run bench -- ${process.argv.slice(2).join(' ')}\n\nService measured: ${measured}${process.env.BENCH_SERVICE_ENV ? `, BENCH_SERVICE_ENV="${process.env.BENCH_SERVICE_ENV}"` : ''}\n\n${machine()}`
  console.log(header + '\n')
  const sections = [header]
  const raw = { opts, started, command: `npm run bench -- ${process.argv.slice(2).join(' ')}`, commit: sh('git rev-parse --short HEAD'), results: {} }
  for (const name of opts.scenarios) {
    log(`== ${name}`)
    const t0 = Date.now()
    const result = await SCENARIOS[name](opts, log)
    raw.results[name] = result
    const text = `${result.text}\n\n(${name}: ${((Date.now() - t0) / 1000).toFixed(0)} s; load average after it ${os.loadavg().map(x => x.toFixed(2)).join(' ')})`
    console.log(text + '\n')
    sections.push(text)
  }
  const stamp = started.toISOString().replace(/[:.]/g, '-')
  writeFileSync(join(OUT_DIR, `results-${stamp}.md`), sections.join('\n\n') + '\n')
  const json = JSON.stringify(raw, (k, v) => (k === 'hist' ? undefined : v), 1)
  writeFileSync(join(OUT_DIR, `results-${stamp}.json`), json)
  log(`== tables in bench/out/results-${stamp}.md, numbers in bench/out/results-${stamp}.json`)
  // Drawn from the saved JSON, as `node bench/charts.js bench/out/results-<stamp>.json` would.
  const charts = await writeCharts(JSON.parse(json), join(OUT_DIR, `charts-${stamp}`), log)
  for (const p of charts) console.log(`chart: ${relative(ROOT, p)}`)
  log(`== done in ${((Date.now() - started) / 1000).toFixed(0)} s; ${charts.length} charts in bench/out/charts-${stamp}/`)
}

// Never leave a run behind: a hard deadline for the whole thing.
setTimeout(() => {
  console.error('bench: hard time limit reached, stopping')
  process.exit(2)
}, Number(process.env.BENCH_TIME_LIMIT_S ?? 3600) * 1000).unref()

main().catch(err => {
  console.error(err)
  process.exit(1)
})
