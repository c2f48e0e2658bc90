// A real Redis Cluster of the test's own (3 masters + replicas, redis-server processes on
// free ports) that a test can SIGKILL, restart and reshard; everything dies in teardown.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import calculateSlot from 'cluster-key-slot'
import { Redis } from 'ioredis'
import { freePort } from './redis.js'

const run = promisify(execFile)
const SLOTS = 16384

/** The part of a tap Test these helpers use. */
export interface Teardown { teardown: (fn: () => unknown) => void }

export interface ClusterOptions {
  /** Masters (default 3, the minimum redis-cli accepts). */
  masters?: number
  /** Replicas per master (default 1). */
  replicas?: number
  /** `requirepass` + `masterauth` on every node. */
  password?: string
  /** An ACL user (with `password`) created on every node with all rights, used as `masteruser` and by the helper itself. */
  username?: string
  /** Extra redis-server arguments for every node. */
  args?: string[]
  /** Node timeout in ms (default 1000). */
  nodeTimeout?: number
}

export interface ClusterNode {
  port: number
  id: string
  role: 'master' | 'replica'
  /** For a replica, the port of its master. */
  masterPort?: number
  /** Slot ranges [start, end] a master serves. */
  slots: Array<[number, number]>
  /** `fail`/`fail?` in the flags of the node that answered. */
  failed: boolean
}

export interface TestCluster {
  /** Nodes as of the last look (startup, or the last wait/reshard/topology()). */
  nodes: ClusterNode[]
  ports: number[]
  /** redis://127.0.0.1:<first master port> (with the credentials if any). */
  url: string
  /** The first master, as a `{ host, port }` list for `new Cluster(...)`. */
  startupNodes: Array<{ host: string, port: number }>
  username?: string
  password?: string
  dir: string
  /** The live topology, read from a running node. */
  topology: () => Promise<ClusterNode[]>
  masterForSlot: (slot: number) => Promise<number>
  masterForKey: (key: string) => Promise<number>
  /** Ports of the replicas of a master. */
  replicasOf: (port: number) => Promise<number[]>
  /** SIGKILL; resolves once the process is gone. */
  kill: (port: number) => Promise<void>
  /** Starts the node again on its port with its nodes.conf (it rejoins, usually as a replica). */
  restart: (port: number) => Promise<void>
  /** After killing master `port`: resolves with the port of the replica that took over its slots, once the cluster is ok again. */
  waitForPromotion: (port: number, timeoutMs?: number) => Promise<number>
  /** Resolves once every running node reports cluster_state ok (with all 16384 slots ok and one agreed slot map) or fail. */
  waitForState: (ok: boolean, timeoutMs?: number) => Promise<void>
  /** Resolves once every replica has acknowledged its master's whole replication stream. */
  waitForReplication: (timeoutMs?: number) => Promise<void>
  /** Moves `slots` slots from master `fromPort` to master `toPort` (redis-cli --cluster reshard). */
  reshard: (fromPort: number, toPort: number, slots: number) => Promise<void>
  /**
   * Moves one slot to master `toPort` step by step as redis-cli does (IMPORTING, MIGRATING,
   * MIGRATE of its keys, SETSLOT NODE everywhere), awaiting `between(step)` after the first
   * two steps so a test can act while the slot is half-moved.
   */
  moveSlot: (slot: number, toPort: number, between?: (step: 'migrating' | 'keys-moved') => Promise<void>) => Promise<void>
  /** A one-shot command on one node. */
  command: (port: number, ...args: Array<string | number>) => Promise<unknown>
  stop: () => Promise<void>
}

/** The slot of a key, hash tags included: the calculation ioredis itself uses. */
export function keySlot (key: string | Buffer): number {
  return calculateSlot(key)
}

/** The master (its own port) that serves `key`, from the slot map as the cluster was created. */
export function masterAtStart (cluster: TestCluster, key: string): number {
  const slot = keySlot(key)
  return cluster.nodes.find(n => n.role === 'master' && n.slots.some(([lo, hi]) => slot >= lo && slot <= hi))!.port
}

export async function poll<T> (what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last !== undefined ? `: ${String(last)}` : ''}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** Spawns redis-server and resolves once it logs `ready` (a sentinel never logs "Ready to accept"). */
export async function spawnRedis (args: string[], label: string, ready = 'Ready to accept connections'): Promise<ChildProcess> {
  const child = track(spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] }))
  let out = ''
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer)
      child.off('exit', onExit)
      if (err === undefined) resolve()
      else {
        child.kill('SIGKILL')
        reject(err)
      }
    }
    const onData = (chunk: Buffer): void => {
      out += chunk.toString()
      if (out.includes(ready)) done()
    }
    const onExit = (code: number | null): void => done(new Error(`${label} exited with ${code}: ${out}`))
    const timer = setTimeout(() => done(new Error(`${label} did not log "${ready}" within 10 s: ${out}`)), 10000)
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', onExit)
  })
  // Keep draining the pipes so the server never blocks on a full one.
  child.stdout!.removeAllListeners('data')
  child.stderr!.removeAllListeners('data')
  child.stdout!.resume()
  child.stderr!.resume()
  return child
}

export async function killChild (child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
}

// Children left when the test process dies anyway (uncaught error, tap timeout).
const everyChild = new Set<ChildProcess>()
process.once('exit', () => { for (const c of everyChild) c.kill('SIGKILL') })
export function track (child: ChildProcess): ChildProcess {
  everyChild.add(child)
  child.once('exit', () => everyChild.delete(child))
  return child
}

/**
 * A detached `sh` that holds the read end of a pipe from this process: when this process
 * is gone however it died (a tap timeout, SIGKILL), the pipe closes and it SIGKILLs every
 * redis-server whose pidfile is in `dir`, then removes `dir`. `release()` after a normal stop.
 */
export function watchdog (dir: string): { release: () => void } {
  const script = 'cat >/dev/null; for f in "$0"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done; rm -rf "$0"'
  const child = spawn('sh', ['-c', script, dir], { stdio: ['pipe', 'ignore', 'ignore'], detached: true })
  child.unref()
  ;(child.stdin as unknown as { unref: () => void }).unref()
  return { release: () => { child.stdin!.end() } }
}

export const pidFile = (dir: string, port: number): string => join(dir, `redis-${port}.pid`)

/** SIGKILLs a node and forgets its pidfile (so the watchdog never kills a reused pid). */
export async function killNode (child: ChildProcess | undefined, dir: string, port: number): Promise<void> {
  await killChild(child)
  await rm(pidFile(dir, port), { force: true })
}

export async function oneShot (port: number, args: Array<string | number>, auth: { username?: string, password?: string } = {}): Promise<unknown> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    ...auth,
    lazyConnect: true,
    connectTimeout: 1000,
    commandTimeout: 2000,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false
  })
  client.on('error', () => {})
  try {
    await client.connect()
    return await client.call(String(args[0]), ...args.slice(1).map(String))
  } finally {
    client.disconnect()
  }
}

function parseInfo (text: string): Record<string, string> {
  const fields: Record<string, string> = {}
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':')
    if (i > 0) fields[line.slice(0, i)] = line.slice(i + 1)
  }
  return fields
}

function parseNodes (text: string): ClusterNode[] {
  const raw = text.trim().split('\n').map(line => {
    const [id, addr, flags, master, , , , , ...slots] = line.trim().split(' ')
    return { id, port: Number(addr.split('@')[0].split(':').pop()), flags: flags.split(','), master, slots }
  })
  const portOf = new Map(raw.map(n => [n.id, n.port]))
  return raw.map(n => {
    const replica = n.flags.includes('slave')
    const ranges: Array<[number, number]> = []
    for (const s of n.slots) {
      if (s.startsWith('[')) continue // a slot being migrated
      const [a, b] = s.split('-').map(Number)
      ranges.push([a, b ?? a])
    }
    return {
      port: n.port,
      id: n.id,
      role: replica ? 'replica' as const : 'master' as const,
      masterPort: replica ? portOf.get(n.master) : undefined,
      slots: ranges,
      failed: n.flags.includes('fail') || n.flags.includes('fail?')
    }
  }).sort((a, b) => a.port - b.port)
}

function slotMap (nodes: ClusterNode[]): string {
  return nodes.filter(n => n.role === 'master' && n.slots.length > 0)
    .map(n => `${n.port}:${n.slots.map(r => r.join('-')).join(',')}`).sort().join(' ')
}

function slotsOf (nodes: ClusterNode[]): number {
  return nodes.filter(n => n.role === 'master').reduce((sum, n) => sum + n.slots.reduce((s, [a, b]) => s + b - a + 1, 0), 0)
}

export async function startCluster (t: Teardown, opts: ClusterOptions = {}): Promise<TestCluster> {
  const masters = opts.masters ?? 3
  const replicas = opts.replicas ?? 1
  const total = masters * (1 + replicas)
  const dir = await mkdtemp(join(tmpdir(), 'sse-fanout-cluster-'))
  const children = new Map<number, ChildProcess>()
  let stopped = false
  const guard = watchdog(dir)
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await Promise.all([...children.values()].map(killChild))
    await rm(dir, { recursive: true, force: true })
    guard.release()
  }
  // Registered first: a failure anywhere below still kills what was started.
  t.teardown(stop)

  // Client port and cluster-bus port both from freePort: port+10000 may be taken or > 65535.
  const ports: number[] = []
  const busPorts = new Map<number, number>()
  const taken = new Set<number>()
  const pick = async (): Promise<number> => {
    for (;;) {
      const p = await freePort()
      if (!taken.has(p)) { taken.add(p); return p }
    }
  }
  for (let i = 0; i < total; i++) {
    const port = await pick()
    ports.push(port)
    busPorts.set(port, await pick())
  }

  const auth = { username: opts.username, password: opts.password }
  const authArgs: string[] = []
  const cliAuth: string[] = []
  if (opts.password !== undefined) {
    // The default user gets the password too; the ACL user (one argv per ACL rule) replicates.
    authArgs.push('--requirepass', opts.password, '--masterauth', opts.password)
    if (opts.username !== undefined) {
      authArgs.push('--user', opts.username, 'on', `>${opts.password}`, '~*', '&*', '+@all', '--masteruser', opts.username)
      cliAuth.push('--user', opts.username, '--pass', opts.password)
    } else {
      cliAuth.push('-a', opts.password)
    }
    cliAuth.push('--no-auth-warning')
  }
  const argsFor = (port: number): string[] => [
    '--port', String(port),
    '--cluster-port', String(busPorts.get(port)),
    '--cluster-enabled', 'yes',
    '--cluster-node-timeout', String(opts.nodeTimeout ?? 1000),
    '--cluster-config-file', join(dir, `nodes-${port}.conf`),
    '--save', '',
    '--appendonly', 'no',
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--pidfile', pidFile(dir, port),
    // Full syncs start at once instead of after the default 5 s diskless-sync delay.
    '--repl-diskless-sync-delay', '0',
    ...authArgs,
    ...(opts.args ?? [])
  ]
  const startNode = async (port: number): Promise<void> => {
    if (stopped) throw new Error('cluster stopped')
    const child = await spawnRedis(argsFor(port), `redis-server :${port}`)
    children.set(port, child)
  }
  const running = (): number[] => ports.filter(p => {
    const c = children.get(p)
    return c !== undefined && c.exitCode === null && c.signalCode === null
  })

  await Promise.all(ports.map(startNode))
  const cli = async (...args: string[]): Promise<string> => {
    try {
      const { stdout } = await run('redis-cli', [...cliAuth, ...args], { timeout: 60000 })
      return stdout
    } catch (err) {
      const e = err as { stdout?: string, stderr?: string, message: string }
      throw new Error(`redis-cli ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`)
    }
  }
  await cli('--cluster', 'create', ...ports.map(p => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes')

  const command = async (port: number, ...args: Array<string | number>): Promise<unknown> => oneShot(port, args, auth)
  const nodesFrom = async (port: number): Promise<ClusterNode[]> => parseNodes(String(await command(port, 'CLUSTER', 'NODES')))

  const cluster: TestCluster = {
    nodes: [],
    ports,
    url: '',
    startupNodes: [],
    username: opts.username,
    password: opts.password,
    dir,
    command,
    async topology () {
      let last: unknown
      for (const port of running()) {
        try {
          const nodes = await nodesFrom(port)
          cluster.nodes = nodes
          return nodes
        } catch (err) { last = err }
      }
      throw new Error(`no running node answered CLUSTER NODES: ${String(last)}`)
    },
    async masterForSlot (slot) {
      const nodes = await cluster.topology()
      const owner = nodes.find(n => n.role === 'master' && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b))
      if (owner === undefined) throw new Error(`no live master serves slot ${slot}`)
      return owner.port
    },
    async masterForKey (key) {
      return cluster.masterForSlot(keySlot(key))
    },
    async replicasOf (port) {
      return (await cluster.topology()).filter(n => n.masterPort === port).map(n => n.port)
    },
    async kill (port) {
      // The topology just before, so waitForPromotion knows which slots to watch.
      await cluster.topology().catch(() => {})
      await killNode(children.get(port), dir, port)
    },
    async restart (port) {
      await killNode(children.get(port), dir, port)
      await startNode(port)
    },
    async waitForState (ok, timeoutMs = 20000) {
      await poll(`cluster_state:${ok ? 'ok' : 'fail'} on every running node`, timeoutMs, async () => {
        const live = running()
        const views = await Promise.all(live.map(async port => {
          const info = parseInfo(String(await command(port, 'CLUSTER', 'INFO')))
          return { info, nodes: ok ? await nodesFrom(port) : [] }
        }))
        if (!ok) return views.every(v => v.info.cluster_state === 'fail') ? true : undefined
        const good = views.every(v => v.info.cluster_state === 'ok' && v.info.cluster_slots_ok === String(SLOTS) && slotsOf(v.nodes) === SLOTS)
        if (!good) return undefined
        // One slot map everywhere, and no running node still marked failed.
        const maps = new Set(views.map(v => slotMap(v.nodes)))
        if (maps.size !== 1) return undefined
        const runningSet = new Set(live)
        const stale = views.some(v => v.nodes.some(n => runningSet.has(n.port) && n.failed))
        return stale ? undefined : true
      })
      await cluster.topology()
    },
    async waitForReplication (timeoutMs = 10000) {
      await poll('replicas in sync with their masters', timeoutMs, async () => {
        const nodes = await cluster.topology()
        const live = new Set(running())
        for (const m of nodes.filter(n => n.role === 'master' && live.has(n.port) && n.slots.length > 0)) {
          const info = parseInfo(String(await command(m.port, 'INFO', 'replication')))
          const want = nodes.filter(n => n.masterPort === m.port && live.has(n.port)).length
          const offset = info.master_repl_offset
          const synced = Object.keys(info).filter(k => /^slave\d+$/.test(k))
            .filter(k => info[k].includes('state=online') && info[k].includes(`offset=${offset},`)).length
          if (synced < want) return undefined
        }
        return true
      })
    },
    async waitForPromotion (port, timeoutMs = 20000) {
      const before = cluster.nodes.find(n => n.port === port)
      if (before === undefined || before.slots.length === 0) throw new Error(`${port} was not a master with slots`)
      const slot = before.slots[0][0]
      const promoted = await poll(`a replica of ${port} to take over slot ${slot}`, timeoutMs, async () => {
        const owner = await cluster.masterForSlot(slot)
        return owner !== port ? owner : undefined
      })
      await cluster.waitForState(true, timeoutMs)
      return promoted
    },
    async reshard (fromPort, toPort, slots) {
      const nodes = await cluster.topology()
      const from = nodes.find(n => n.port === fromPort)
      const to = nodes.find(n => n.port === toPort)
      if (from?.role !== 'master' || to?.role !== 'master') throw new Error('reshard needs two masters')
      await cli('--cluster', 'reshard', `127.0.0.1:${fromPort}`,
        '--cluster-from', from.id, '--cluster-to', to.id, '--cluster-slots', String(slots), '--cluster-yes')
      await cluster.waitForState(true)
    },
    async moveSlot (slot, toPort, between = async () => {}) {
      const nodes = await cluster.topology()
      const from = nodes.find(n => n.role === 'master' && n.slots.some(([a, b]) => slot >= a && slot <= b))
      const to = nodes.find(n => n.port === toPort)
      if (from === undefined || to?.role !== 'master' || from === to) throw new Error(`slot ${slot} cannot move to ${toPort}`)
      await command(to.port, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', from.id)
      await command(from.port, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', to.id)
      await between('migrating')
      const migrateAuth = opts.password === undefined ? [] : opts.username === undefined ? ['AUTH', opts.password] : ['AUTH2', opts.username, opts.password]
      for (;;) {
        const keys = await command(from.port, 'CLUSTER', 'GETKEYSINSLOT', slot, 100) as string[]
        if (keys.length === 0) break
        await command(from.port, 'MIGRATE', '127.0.0.1', to.port, '', 0, 5000, ...migrateAuth, 'KEYS', ...keys)
      }
      await between('keys-moved')
      // The new owner first, then the old one (it stops redirecting with ASK), then the rest.
      for (const n of [to, from, ...nodes.filter(n => n.role === 'master' && n !== to && n !== from)]) {
        await command(n.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id)
      }
      await cluster.waitForState(true)
    },
    stop
  }

  await cluster.waitForState(true, 30000)
  await poll('every replica linked to its master', 30000, async () => {
    const nodes = await cluster.topology()
    if (nodes.filter(n => n.role === 'replica').length !== masters * replicas) return undefined
    for (const r of nodes.filter(n => n.role === 'replica')) {
      const info = parseInfo(String(await command(r.port, 'INFO', 'replication')))
      if (info.master_link_status !== 'up') return undefined
    }
    return true
  })
  const first = cluster.nodes.filter(n => n.role === 'master')[0].port
  const cred = opts.password === undefined ? '' : `${encodeURIComponent(opts.username ?? '')}:${encodeURIComponent(opts.password)}@`
  cluster.url = `redis://${cred}127.0.0.1:${first}`
  cluster.startupNodes = [{ host: '127.0.0.1', port: first }]
  return cluster
}
