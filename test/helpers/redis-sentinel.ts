// A real Sentinel setup of the test's own: one master, one replica, three sentinels (quorum
// 2), all redis-server processes on free ports; everything dies in teardown.
import { type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './redis.js'
import { killChild, killNode, oneShot, pidFile, poll, spawnRedis, watchdog, type Teardown } from './redis-cluster.js'

export interface SentinelOptions {
  /** Master name (default "fanout"). */
  masterName?: string
  /** `requirepass` + `masterauth` on master and replica, `sentinel auth-pass` on the sentinels. */
  password?: string
  /** Extra redis-server arguments for master and replica. */
  args?: string[]
}

export interface TestSentinel {
  masterName: string
  sentinels: Array<{ host: string, port: number }>
  /** The ports the data nodes started as. */
  masterPort: number
  replicaPort: number
  password?: string
  dir: string
  /** SIGKILL one of the processes (data node or sentinel); resolves once it is gone. */
  kill: (port: number) => Promise<void>
  /** Starts a killed data node or sentinel again with its arguments/config. */
  restart: (port: number) => Promise<void>
  /** The master the sentinels report now (the first one that answers). */
  currentMaster: () => Promise<number>
  /** Resolves with the new master's port once every running sentinel reports a master other than `from` (default: the starting master) and it says role master. */
  waitForFailover: (from?: number, timeoutMs?: number) => Promise<number>
  command: (port: number, ...args: Array<string | number>) => Promise<unknown>
  stop: () => Promise<void>
}

export async function startSentinel (t: Teardown, opts: SentinelOptions = {}): Promise<TestSentinel> {
  const masterName = opts.masterName ?? 'fanout'
  const dir = await mkdtemp(join(tmpdir(), 'sse-fanout-sentinel-'))
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
  t.teardown(stop)

  const taken = new Set<number>()
  const pick = async (): Promise<number> => {
    for (;;) {
      const p = await freePort()
      if (!taken.has(p)) { taken.add(p); return p }
    }
  }
  const masterPort = await pick()
  const replicaPort = await pick()
  const sentinelPorts = [await pick(), await pick(), await pick()]

  const auth = opts.password === undefined ? [] : ['--requirepass', opts.password, '--masterauth', opts.password]
  const dataArgs = (port: number): string[] => [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
    '--pidfile', pidFile(dir, port),
    // Full syncs start at once instead of after the default 5 s diskless-sync delay.
    '--repl-diskless-sync-delay', '0',
    ...auth, ...(opts.args ?? []),
    ...(port === replicaPort ? ['--replicaof', '127.0.0.1', String(masterPort)] : [])
  ]
  const confFor = (port: number): string => join(dir, `sentinel-${port}.conf`)
  const startProcess = async (port: number): Promise<void> => {
    if (stopped) throw new Error('sentinel setup stopped')
    const sentinel = sentinelPorts.includes(port)
    const args = sentinel ? [confFor(port), '--sentinel'] : dataArgs(port)
    children.set(port, await spawnRedis(args, `${sentinel ? 'sentinel' : 'redis-server'} :${port}`, sentinel ? '+monitor master' : undefined))
  }
  const running = (ports: number[]): number[] => ports.filter(p => {
    const c = children.get(p)
    return c !== undefined && c.exitCode === null && c.signalCode === null
  })
  const dataAuth = { password: opts.password }
  const command = async (port: number, ...args: Array<string | number>): Promise<unknown> =>
    oneShot(port, args, sentinelPorts.includes(port) ? {} : dataAuth)

  await startProcess(masterPort)
  await startProcess(replicaPort)
  await poll('the replica linked to the master', 10000, async () =>
    /master_link_status:up/.test(String(await command(replicaPort, 'INFO', 'replication'))) ? true : undefined)

  // Sentinel rewrites its config file: one writable file each. Each one is told its own id,
  // the other sentinels and the replica up front (directives sentinel itself writes), instead
  // of discovering them through hello messages and INFO over several seconds.
  const ids = new Map(sentinelPorts.map(port => [port, randomBytes(20).toString('hex')]))
  await Promise.all(sentinelPorts.map(async port => {
    await writeFile(confFor(port), [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `pidfile ${pidFile(dir, port)}`,
      `sentinel myid ${ids.get(port)}`,
      `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 2`,
      `sentinel known-replica ${masterName} 127.0.0.1 ${replicaPort}`,
      ...sentinelPorts.filter(p => p !== port).map(p => `sentinel known-sentinel ${masterName} 127.0.0.1 ${p} ${ids.get(p)}`),
      `sentinel down-after-milliseconds ${masterName} 1000`,
      `sentinel failover-timeout ${masterName} 3000`,
      `sentinel parallel-syncs ${masterName} 1`,
      ...(opts.password === undefined ? [] : [`sentinel auth-pass ${masterName} ${opts.password}`]),
      ''
    ].join('\n'))
    await startProcess(port)
  }))

  const pairs = (reply: unknown): Record<string, string> => {
    const list = reply as string[]
    const out: Record<string, string> = {}
    for (let i = 0; i + 1 < list.length; i += 2) out[list[i]] = list[i + 1]
    return out
  }
  // A failover needs sentinels that know each other and the replica (hello messages, ~2 s).
  await poll('sentinels to find each other and the replica', 20000, async () => {
    for (const port of sentinelPorts) {
      const master = pairs(await command(port, 'SENTINEL', 'MASTER', masterName))
      if (master['num-other-sentinels'] !== '2' || master['num-slaves'] !== '1' || master.flags !== 'master') return undefined
      const [replica] = (await command(port, 'SENTINEL', 'REPLICAS', masterName) as unknown[]).map(pairs)
      if (replica?.['master-link-status'] !== 'ok' || replica.flags !== 'slave') return undefined
    }
    return true
  })

  const reportedMasters = async (): Promise<number[]> => Promise.all(running(sentinelPorts).map(async port => {
    const [, p] = await command(port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName) as [string, string]
    return Number(p)
  }))

  return {
    masterName,
    sentinels: sentinelPorts.map(port => ({ host: '127.0.0.1', port })),
    masterPort,
    replicaPort,
    password: opts.password,
    dir,
    command,
    async kill (port) { await killNode(children.get(port), dir, port) },
    async restart (port) {
      await killNode(children.get(port), dir, port)
      await startProcess(port)
    },
    async currentMaster () {
      const [first] = await reportedMasters()
      if (first === undefined) throw new Error('no sentinel running')
      return first
    },
    async waitForFailover (from = masterPort, timeoutMs = 20000) {
      return poll(`sentinels to fail ${masterName} over from ${from}`, timeoutMs, async () => {
        const reported = new Set(await reportedMasters())
        if (reported.size !== 1) return undefined
        const [now] = reported
        if (now === from) return undefined
        const role = await command(now, 'ROLE') as [string]
        return role[0] === 'master' ? now : undefined
      })
    },
    stop
  }
}
