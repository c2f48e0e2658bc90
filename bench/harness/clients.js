// The parent's side of the client processes: spawns them, spreads clients over them
// and over source addresses 127.0.0.2..., arms runs, waits for the deliveries and merges
// what each process counted.
import { join } from 'node:path'
import { createHistogram, mergeSparse } from './histogram.js'
import { HARNESS_DIR, spawnLimited } from './targets.js'

/** Source addresses: each has its own ~28k ephemeral ports. */
export const SOURCES = Array.from({ length: 16 }, (_, i) => `127.0.0.${i + 2}`)

class Worker {
  constructor (proc) {
    this.proc = proc
    this.seq = 0
    this.pending = new Map()
    proc.on('message', msg => {
      const p = this.pending.get(msg.id)
      if (p === undefined) return
      this.pending.delete(msg.id)
      if (msg.ok) p.resolve(msg.result)
      else p.reject(new Error(msg.error))
    })
    proc.on('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`client process exited (${code})`))
      this.pending.clear()
    })
  }

  call (cmd, args = {}) {
    return new Promise((resolve, reject) => {
      const id = ++this.seq
      this.pending.set(id, { resolve, reject })
      this.proc.send({ id, cmd, ...args })
    })
  }
}

export class ClientPool {
  constructor ({ processes = 4, nofile = 20000 } = {}) {
    this.processes = processes
    this.nofile = nofile
    this.workers = []
    this.sizes = new Map()
  }

  start () {
    for (let i = 0; i < this.processes; i++) {
      const nodeArgs = (process.env.BENCH_CLIENT_NODE_ARGS ?? '').split(' ').filter(Boolean)
      const proc = spawnLimited(process.execPath, [...nodeArgs, join(HARNESS_DIR, 'client-worker.js')], {
        nofile: this.nofile,
        stdio: ['ignore', 'inherit', 'inherit', 'ipc']
      })
      this.workers.push(new Worker(proc))
    }
  }

  all (cmd, args) {
    return Promise.all(this.workers.map(w => w.call(cmd, args)))
  }

  /**
   * Opens `count` streams in `group`, client i to targets[i % targets.length]
   * (so two instances split them evenly). Resolves when every stream has its headers.
   */
  async connect (group, targets, count, { concurrency = 400, keepSlots = false } = {}) {
    const ends = targets.map(t => ({ host: t.host, port: t.port, path: t.streamPath }))
    const per = Math.ceil(count / this.workers.length)
    const started = Date.now()
    const parts = await Promise.all(this.workers.map((w, i) => {
      const first = i * per
      const n = Math.max(0, Math.min(per, count - first))
      return w.call('connect', {
        group,
        targets: ends,
        sources: SOURCES,
        first,
        count: n,
        concurrency: Math.ceil(concurrency / this.workers.length),
        keepSlots
      })
    }))
    const statuses = {}
    let ok = 0
    for (const p of parts) {
      ok += p.ok
      for (const [k, v] of Object.entries(p.statuses)) statuses[k] = (statuses[k] ?? 0) + v
    }
    this.sizes.set(group, ok)
    return { ok, statuses, ms: Date.now() - started }
  }

  /** `capacity`: clients per process to arm for before they connect; `replay`: see client-worker's Group.arm. */
  arm (group, events, payloadBytes, { capacity = 0, replay = 0 } = {}) {
    return this.all('arm', { group, events, payloadBytes, capacity, replay })
  }

  /** Clients per process when `count` connect (what `connect` gives each). */
  perProcess (count) {
    return Math.ceil(count / this.workers.length)
  }

  async status (group) {
    const parts = await this.all('status', { group })
    const s = { deliveries: 0, complete: 0, clients: 0, lastUs: 0, closedEarly: 0, replayedClients: 0, replayedUs: 0, resets: 0, refused: 0 }
    for (const p of parts) {
      for (const k of ['deliveries', 'complete', 'clients', 'closedEarly', 'replayedClients', 'resets', 'refused']) s[k] += p[k]
      s.lastUs = Math.max(s.lastUs, p.lastUs)
      s.replayedUs = Math.max(s.replayedUs, p.replayedUs)
    }
    return s
  }

  /** Until every client has all events, or nothing arrived for quietMs, or timeoutMs; `progress(status, ms)` every `progressMs`. */
  async waitDone (group, { quietMs = 3000, timeoutMs = 120000, progress = null, progressMs = 10000 } = {}) {
    const started = Date.now()
    let reported = started
    let last = -1
    let lastChange = Date.now()
    for (;;) {
      const s = await this.status(group)
      if (s.complete >= s.clients) return { ...s, reason: 'complete' }
      if (s.deliveries !== last) {
        last = s.deliveries
        lastChange = Date.now()
      }
      if (Date.now() - lastChange > quietMs) return { ...s, reason: 'quiet' }
      if (Date.now() - started > timeoutMs) return { ...s, reason: 'timeout' }
      if (progress !== null && Date.now() - reported >= progressMs) {
        reported = Date.now()
        progress(s, reported - started)
      }
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }

  async collect (group) {
    const parts = await this.all('collect', { group })
    const hist = createHistogram()
    const out = {
      clients: 0,
      deliveries: 0,
      complete: 0,
      missing: 0,
      clientsMissing: 0,
      duplicates: 0,
      outOfOrder: 0,
      unexpected: 0,
      sampled: 0,
      malformed: 0,
      closedEarly: 0,
      resets: 0,
      refused: 0,
      replayedClients: 0,
      replayedUs: 0,
      firstUs: Infinity,
      lastUs: 0,
      cpuUs: 0,
      cpuSysUs: 0,
      hist
    }
    for (const p of parts) {
      for (const k of ['clients', 'deliveries', 'complete', 'missing', 'clientsMissing', 'duplicates', 'outOfOrder', 'unexpected', 'sampled', 'malformed', 'closedEarly', 'resets', 'refused', 'replayedClients', 'cpuUs', 'cpuSysUs']) out[k] += p[k]
      out.replayedUs = Math.max(out.replayedUs, p.replayedUs)
      if (p.firstUs > 0) out.firstUs = Math.min(out.firstUs, p.firstUs)
      out.lastUs = Math.max(out.lastUs, p.lastUs)
      mergeSparse(hist, p.hist)
    }
    return out
  }

  close (group) {
    this.sizes.delete(group)
    return this.all('close', { group })
  }

  async stop () {
    await this.all('exit').catch(() => {})
    await Promise.all(this.workers.map(w => new Promise(resolve => {
      if (w.proc.exitCode !== null || w.proc.signalCode !== null) return resolve()
      const timer = setTimeout(() => w.proc.kill('SIGKILL'), 5000)
      w.proc.once('exit', () => { clearTimeout(timer); resolve() })
    })))
  }
}
