// The processes a benchmark runs against: this service, the naive server, nchan under
// nginx, the bare Fastify route and a private redis-server. Each starts on a free
// loopback port with its own fd limit and stops by itself on stop(); /proc gives RSS
// and CPU time of each process (all threads) for the tables.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const HARNESS_DIR = dirname(fileURLToPath(import.meta.url))
export const BENCH_DIR = dirname(HARNESS_DIR)
export const ROOT = dirname(BENCH_DIR)
export const OUT_DIR = join(BENCH_DIR, 'out')
const SERVERS_DIR = join(BENCH_DIR, 'servers')
const HOST = '127.0.0.1'
const NCHAN_MODULE = '/usr/lib/nginx/modules/ngx_nchan_module.so'

export function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, HOST, () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

const children = new Set()
// A run that dies or is interrupted takes its servers with it.
process.on('exit', () => {
  for (const p of children) {
    for (const pid of processTree(p.pid)) {
      try { process.kill(pid, 'SIGKILL') } catch {}
    }
  }
})
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130))

/** Runs `cmd args` under `ulimit -n nofile` (raised up to the hard limit, lowered exactly). */
export function spawnLimited (cmd, args, { nofile, env, stdio = ['ignore', 'inherit', 'inherit'] }) {
  const script = `ulimit -n ${nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`
  const proc = spawn('/bin/sh', ['-c', script, 'sh', cmd, ...args], { env: { ...process.env, ...env }, stdio })
  children.add(proc)
  proc.on('exit', () => children.delete(proc))
  return proc
}

export function hardFdLimit () {
  const r = spawnSync('/bin/sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' })
  const v = r.stdout.trim()
  return v === 'unlimited' ? 1_048_576 : Number(v)
}

async function waitFor (check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`${what} did not start within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

function httpAnswers (port, path) {
  return new Promise(resolve => {
    const sock = net.connect({ host: HOST, port })
    sock.setTimeout(1000)
    sock.on('connect', () => sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`))
    sock.on('data', () => { sock.destroy(); resolve(true) })
    sock.on('error', () => resolve(false))
    sock.on('timeout', () => { sock.destroy(); resolve(false) })
  })
}

function redisAnswers (port) {
  return new Promise(resolve => {
    const sock = net.connect({ host: HOST, port })
    sock.setTimeout(1000)
    sock.on('connect', () => sock.write('PING\r\n'))
    sock.on('data', buf => { sock.destroy(); resolve(buf.toString().startsWith('+PONG')) })
    sock.on('error', () => resolve(false))
    sock.on('timeout', () => { sock.destroy(); resolve(false) })
  })
}

function exited (proc) {
  return proc.exitCode !== null || proc.signalCode !== null
}

function stopper (proc, signal = 'SIGTERM', graceMs = 15000) {
  return () => new Promise(resolve => {
    if (exited(proc)) return resolve()
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs)
    proc.once('exit', () => { clearTimeout(timer); resolve() })
    proc.kill(signal)
  })
}

/** pid and its descendants (nginx master and workers). */
export function processTree (pid) {
  const out = [pid]
  for (let i = 0; i < out.length; i++) {
    try {
      for (const task of readdirSync(`/proc/${out[i]}/task`)) {
        const kids = readFileSync(`/proc/${out[i]}/task/${task}/children`, 'utf8').trim()
        if (kids !== '') for (const k of kids.split(' ')) out.push(Number(k))
      }
    } catch {}
  }
  return out
}

/** Resident set size of the processes, bytes. */
export function rssBytes (pids) {
  let kb = 0
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (m !== null) kb += Number(m[1])
    } catch {}
  }
  return kb * 1024
}

/** CPU time spent by the processes, all their threads, in ns (schedstat). */
export function cpuNs (pids) {
  let ns = 0
  for (const pid of pids) {
    try {
      for (const task of readdirSync(`/proc/${pid}/task`)) {
        ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0])
      }
    } catch {}
  }
  return ns
}

function target (name, proc, port, extra = {}) {
  return {
    name,
    host: HOST,
    port,
    pid: proc.pid,
    proc,
    pids () { return processTree(proc.pid) },
    stop: stopper(proc),
    ...extra
  }
}

let serverJs = join(ROOT, 'dist/server.js')

export function serviceBuilt () {
  return existsSync(serverJs)
}

/**
 * Measure the service as committed at `ref` rather than the shared dist/ (which others
 * rebuild from their working trees): git archive into bench/out/build/<sha>, compiled
 * with the repository's node_modules. Returns the commit's short sha.
 */
export function useRef (ref) {
  const sha = spawnSync('git', ['rev-parse', '--short', ref], { cwd: ROOT, encoding: 'utf8' }).stdout.trim()
  if (sha === '') throw new Error(`--ref ${ref}: not a commit`)
  const dir = join(OUT_DIR, 'build', sha)
  // The entry point moved from src/ to the root; a ref from before the move has it in src/.
  const entry = () => [join(dir, 'dist/server.js'), join(dir, 'dist/src/server.js')].find(f => existsSync(f))
  serverJs = entry() ?? join(dir, 'dist/server.js')
  if (existsSync(serverJs)) return sha
  mkdirSync(dir, { recursive: true })
  const run = (cmd) => {
    const r = spawnSync('/bin/sh', ['-c', cmd], { cwd: dir, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`building ${ref} failed: ${cmd}\n${r.stdout}${r.stderr}`)
  }
  run(`git -C '${ROOT}' archive ${sha} | tar -x`)
  // Its own packages when its lock differs (a ref from before a dependency change), else ours.
  const same = readFileSync(join(dir, 'package-lock.json'), 'utf8') === readFileSync(join(ROOT, 'package-lock.json'), 'utf8')
  run(same ? `ln -sfn '${join(ROOT, 'node_modules')}' node_modules` : 'npm ci --no-audit --no-fund --silent')
  run(`'${process.execPath}' '${join(ROOT, 'node_modules/typescript/bin/tsc')}' -p tsconfig.build.json`)
  serverJs = entry() ?? serverJs
  return sha
}

/** BENCH_SERVICE_ENV="NAME=value NAME=value": settings for every service instance. */
function extraServiceEnv () {
  const out = {}
  for (const pair of (process.env.BENCH_SERVICE_ENV ?? '').split(/\s+/).filter(Boolean)) {
    const eq = pair.indexOf('=')
    if (eq > 0) out[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return out
}

/** This service: dist/server.js (or the build of --ref). `redisUrl` empty = single-instance mode. */
export async function startService ({ name = 'service', redisUrl = '', prefix = 'bench:', nofile = 20000, env = {}, nodeArgs = [] } = {}) {
  const port = await freePort()
  // Its log goes to a file: a refused publish logs a stack per request.
  mkdirSync(join(OUT_DIR, 'logs'), { recursive: true })
  const logFd = openSync(join(OUT_DIR, 'logs', `${name}-${port}.log`), 'a')
  const proc = spawnLimited(process.execPath, [...nodeArgs, serverJs], {
    nofile,
    stdio: ['ignore', logFd, logFd],
    env: {
      PORT: String(port),
      HOST,
      LOG_LEVEL: 'warn',
      REDIS_URL: redisUrl,
      REDIS_PREFIX: prefix,
      ...extraServiceEnv(),
      ...env
    }
  })
  await waitFor(() => !exited(proc) && httpAnswers(port, '/health'), 15000, name)
  return target(name, proc, port, { kind: 'json', streamPath: '/stream?topic=bench', publishPath: '/notify' })
}

export async function startNaive ({ nofile = 20000 } = {}) {
  const port = await freePort()
  const proc = spawnLimited(process.execPath, [join(SERVERS_DIR, 'naive-server.js')], { nofile, env: { PORT: String(port), HOST } })
  await waitFor(() => !exited(proc) && httpAnswers(port, '/health'), 15000, 'naive server')
  return target('naive', proc, port, { kind: 'json', streamPath: '/stream?topic=bench', publishPath: '/notify' })
}

export async function startBareFastify () {
  const port = await freePort()
  const proc = spawnLimited(process.execPath, [join(SERVERS_DIR, 'bare-fastify.js')], { nofile: 20000, env: { PORT: String(port), HOST } })
  await waitFor(() => !exited(proc) && httpAnswers(port, '/health'), 15000, 'bare Fastify')
  return target('bare-fastify', proc, port, { kind: 'json', publishPath: '/notify' })
}

/** Why nchan cannot run here, or null when nginx and its nchan module are installed. */
export function nchanMissing () {
  const nginx = spawnSync('nginx', ['-v'], { encoding: 'utf8' })
  if (nginx.error !== undefined) return 'nginx is not installed (apt-get install nginx libnginx-mod-nchan)'
  if (!existsSync(NCHAN_MODULE)) return `the nchan module is not installed (${NCHAN_MODULE} missing: apt-get install libnginx-mod-nchan)`
  return null
}

/**
 * nchan in its own nginx (daemon off, own prefix, loopback only). One worker by default,
 * the same one core a Node instance gets; NCHAN_WORKERS raises it.
 *
 * With `redisUrl`, the channel lives in that Redis (nchan's default "distributed" storage
 * mode): an `upstream { nchan_redis_server URL; }` and `nchan_redis_pass` in the publisher
 * and subscriber locations (nchan 1.3 warns that `nchan_redis_url` + `nchan_use_redis`,
 * the older form, are discouraged), so several such nginx share it: a message published to one reaches the subscribers of all. Subscribers
 * then start at the newest message (`nchan_subscriber_first_message newest`), so a new
 * stream is not first replayed what the warm-up left in the channel's Redis buffer.
 */
export async function startNchan ({ name = 'nchan', workers = 1, connections = 20000, redisUrl = '' } = {}) {
  const port = await freePort()
  const dir = join(OUT_DIR, `nginx-${port}`)
  for (const d of ['', 'tmp', 'logs']) mkdirSync(join(dir, d), { recursive: true })
  // Within the hard fd limit (nginx logs a setrlimit alert above it).
  const nofile = Math.min(connections + 1000, hardFdLimit())
  const workerConnections = Math.min(connections, nofile - 100)
  const redis = redisUrl === '' ? '' : '\n      nchan_redis_pass redis_store;'
  const conf = `load_module ${NCHAN_MODULE};
user root;
worker_processes ${workers};
worker_rlimit_nofile ${nofile};
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections ${workerConnections}; multi_accept on; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  nchan_shared_memory_size 256m;${redisUrl === '' ? '' : `\n  upstream redis_store { nchan_redis_server "${redisUrl}"; }`}
  server {
    listen ${HOST}:${port} backlog=4096;
    location = /health { return 200 "ok\\n"; }
    location = /notify {
      nchan_publisher;
      nchan_channel_id $arg_topic;
      nchan_message_buffer_length 1000;
      nchan_message_timeout 5m;${redis}
    }
    location = /stream {
      nchan_subscriber eventsource;
      nchan_channel_id $arg_topic;${redisUrl === '' ? '' : '\n      nchan_subscriber_first_message newest;'}${redis}
    }
  }
}
`
  const file = join(dir, 'nginx.conf')
  writeFileSync(file, conf)
  const proc = spawnLimited('nginx', ['-p', dir, '-c', file, '-g', 'daemon off;'], { nofile })
  await waitFor(() => !exited(proc) && httpAnswers(port, '/health'), 15000, `nginx/nchan (${name}, ${dir}/logs/error.log)`)
  if (redisUrl !== '') await waitFor(() => !exited(proc) && nchanPublishes(port), 15000, `nchan (${name}) publishing to Redis (${dir}/logs/error.log)`)
  return target(name, proc, port, { kind: 'raw', streamPath: '/stream?topic=bench', publishPath: '/notify?topic=bench', stop: stopper(proc, 'SIGQUIT'), errorLog: join(dir, 'logs', 'error.log') })
}

/** nchan answers a GET on its publisher location (channel info) once its Redis is connected; 503 before. */
function nchanPublishes (port) {
  return new Promise(resolve => {
    const sock = net.connect({ host: HOST, port })
    sock.setTimeout(1000)
    sock.on('connect', () => sock.write('GET /notify?topic=bench-ready HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\nConnection: close\r\n\r\n'))
    sock.on('data', buf => { sock.destroy(); resolve(!/^HTTP\/1\.[01] 5/.test(buf.toString('latin1'))) })
    sock.on('error', () => resolve(false))
    sock.on('timeout', () => { sock.destroy(); resolve(false) })
  })
}

/** A private redis-server (no persistence), so runs never touch anyone's data. */
export async function startRedis () {
  const port = await freePort()
  const proc = spawnLimited('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--maxclients', '1000', '--loglevel', 'warning'], { nofile: 4096, stdio: ['ignore', 'ignore', 'inherit'] })
  await waitFor(() => !exited(proc) && redisAnswers(port), 10000, 'redis-server')
  return target('redis', proc, port, { url: `redis://${HOST}:${port}` })
}

/** One RESP command on a fresh connection; resolves with the raw reply text (bounded by timeoutMs). */
export function redisCommand (port, args, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: HOST, port })
    let buf = ''
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`redis :${port} ${args[0]}: no reply within ${timeoutMs} ms`)) }, timeoutMs)
    const done = (err, value) => { clearTimeout(timer); sock.destroy(); if (err) reject(err); else resolve(value) }
    sock.on('connect', () => sock.write(`*${args.length}\r\n${args.map(a => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`))
    sock.on('data', d => {
      buf += d
      if (buf[0] === '$') {
        const nl = buf.indexOf('\r\n')
        const len = Number(buf.slice(1, nl))
        if (len < 0) return done(null, '')
        if (Buffer.byteLength(buf) >= nl + 2 + len + 2) done(null, buf.slice(nl + 2, nl + 2 + len))
      } else if (buf.endsWith('\r\n')) {
        if (buf[0] === '-') done(new Error(buf.trim()))
        else done(null, buf)
      }
    })
    sock.on('error', err => done(err))
  })
}

/**
 * A private Redis Cluster: `masters` + `masters * replicas` redis-server processes on free
 * ports (client and bus ports both picked free), `redis-cli --cluster create`, then every
 * node at cluster_state:ok with all 16384 slots and one slot map. No persistence; its
 * nodes.conf files live in bench/out/cluster-<port>, removed on stop(). The nodes die with
 * this process like every other child. `nodes`: [{ port, pid, role }] (masters first).
 */
export async function startRedisCluster ({ masters = 3, replicas = 0, timeoutMs = 30000 } = {}) {
  const total = masters * (1 + replicas)
  const taken = new Set()
  const pick = async () => { for (;;) { const p = await freePort(); if (!taken.has(p)) { taken.add(p); return p } } }
  const ports = []
  const bus = new Map()
  for (let i = 0; i < total; i++) { const p = await pick(); ports.push(p); bus.set(p, await pick()) }
  const dir = join(OUT_DIR, `cluster-${ports[0]}`)
  mkdirSync(dir, { recursive: true })
  const procs = new Map()
  const stop = async () => {
    await Promise.all([...procs.values()].map(p => stopper(p, 'SIGTERM', 5000)()))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (const port of ports) {
      procs.set(port, spawnLimited('redis-server', [
        '--port', String(port), '--cluster-port', String(bus.get(port)), '--bind', HOST,
        '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '5000',
        '--dir', dir, '--save', '', '--appendonly', 'no', '--maxclients', '1000', '--loglevel', 'warning'
      ], { nofile: 4096, stdio: ['ignore', 'ignore', 'inherit'] }))
    }
    for (const port of ports) await waitFor(() => !exited(procs.get(port)) && redisAnswers(port), 10000, `cluster node redis-server :${port}`)
    const cli = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map(p => `${HOST}:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { encoding: 'utf8', timeout: 60000 })
    if (cli.status !== 0) throw new Error(`redis-cli --cluster create failed (${cli.status ?? cli.signal}): ${cli.stdout}${cli.stderr}`)
    const info = async port => Object.fromEntries((await redisCommand(port, ['CLUSTER', 'INFO'])).split('\r\n').filter(l => l.includes(':')).map(l => l.split(':')))
    const slotMap = async port => (await redisCommand(port, ['CLUSTER', 'NODES'])).trim().split('\n')
      .map(l => l.split(' ')).filter(f => f[2].includes('master')).map(f => `${f[1].split('@')[0]}:${f.slice(8).join(',')}`).sort().join(' ')
    await waitFor(async () => {
      try {
        const infos = await Promise.all(ports.map(info))
        if (!infos.every(i => i.cluster_state === 'ok' && i.cluster_slots_ok === '16384')) return false
        return new Set(await Promise.all(ports.map(slotMap))).size === 1
      } catch { return false }
    }, timeoutMs, 'cluster_state:ok on every node')
  } catch (err) {
    await stop()
    throw err
  }
  // Roles and slots as the cluster sees them.
  const nodes = (await redisCommand(ports[0], ['CLUSTER', 'NODES'])).trim().split('\n').map(l => {
    const f = l.split(' ')
    const port = Number(f[1].split('@')[0].split(':').pop())
    const slots = f.slice(8).filter(s => !s.startsWith('[')).map(s => s.split('-').map(Number)).map(([a, b]) => [a, b ?? a])
    return { port, pid: procs.get(port).pid, role: f[2].includes('master') ? 'master' : 'replica', slots }
  }).sort((a, b) => (a.role === b.role ? a.port - b.port : a.role === 'master' ? -1 : 1))
  const first = nodes[0].port
  return {
    name: 'redis-cluster',
    host: HOST,
    ports,
    nodes,
    url: `redis://${HOST}:${first}`,
    /** The master's port serving `slot`. */
    masterForSlot: slot => nodes.find(n => n.role === 'master' && n.slots.some(([a, b]) => slot >= a && slot <= b))?.port,
    stop
  }
}
