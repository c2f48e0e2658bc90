// Local clients, grouped by the set of logs they read. Knows nothing of HTTP: a client
// writes to a Sink. Clients of one group share every frame: their cursors are the same
// (this instance's newest position in each of their logs), so an event is encoded once
// per group, not once per client.
import { encodeCursor, streamLogs } from './cursor.js'
import { compareIds } from './event-id.js'

/** How long one turn writes queued clients before it lets the event loop read what came in. */
const SLICE_MS = 4

/**
 * A publish answered while a pass is under way waits until the hub has written this
 * share of the clients then queued (`paced`): 1/4 (bench/RESULTS.md: 1/2 to 1/6 tried).
 */
const PACE_PARTS = 4

/** What the hub needs of a socket (node's ServerResponse or net.Socket fit). */
export interface Sink {
  write (chunk: Buffer): boolean
  readonly writableLength: number
  end (chunk?: Buffer): void
  destroy (): void
}

/** One event as it arrives on one of its logs. */
export interface Delivery {
  /** The topic it came through, or BROADCAST. */
  log: string
  /** Its position in that log; null for an event delivered on this instance only (no id). */
  position: string | null
  /** Shared by the copies of an event published to several topics; null otherwise. */
  uid: string | null
  /** All its topics; null for a broadcast. */
  topics: string[] | null
  /**
   * For a copy of an event of several topics: its positions in the logs of its topics
   * that sort before this one (they were written first), joined by ','; else null.
   */
  priors: string | null
  /** The frame after its id line: `event:` and `data:` lines and the blank line. */
  body: Buffer
  /**
   * When it was accepted, in this process's performance.now() time: by POST /notify here,
   * or, for an event from Redis, when Redis appended it (its id's time); unset: unknown.
   */
  acceptedAt?: number
}

/** Clients reading the same logs: one cursor, one frame per event. */
export class Group {
  readonly key: string
  readonly logs: string[]
  readonly clients = new Set<Client>()

  constructor (key: string, logs: string[]) {
    this.key = key
    this.logs = logs
  }

  /** The log through which an event of several topics reaches this group: its first one. */
  entry (topics: string[]): string | null {
    for (const log of this.logs) if (topics.includes(log)) return log
    return null
  }
}

export class Client {
  readonly topics: string[]
  readonly sink: Sink
  /** Set when the hub adds the client. */
  group: Group | null = null
  /** Deliveries held back while the client replays or waits for its logs; null after. */
  held: Delivery[] | null = null
  heldBytes = 0
  /** A new client (no Last-Event-ID) that goes live as soon as its logs are ready. */
  waiting = false
  /**
   * Its own position in each log of its group, while it differs from the group's: held,
   * or live but ahead of this instance (it came from an instance that was ahead).
   */
  cursor: Array<string | null> | null = null
  /** Events of several topics its replay got through another log than its group's entry. */
  replayed: Set<string> | null = null
  /** Frames delivered in this event-loop turn, written together at its end. */
  queue: Buffer[] = []
  queuedBytes = 0
  /** Nothing written since the last heartbeat tick. */
  idle = true
  closed = false
  /** The stream's first bytes, written once it is live or replaying: a client that sees them open can rely on getting what is published after. */
  opening: Buffer | null

  constructor (sink: Sink, topics: string[], opening: Buffer | null = null) {
    this.sink = sink
    this.topics = topics
    this.opening = opening
  }
}

export interface HubOptions {
  /** A client whose unsent bytes exceed this is disconnected. */
  bufferBytes: number
  /** A log got its first reader on this instance: subscribe to it (then call `ready`). */
  watch: (log: string) => void
  /** A log lost its last reader on this instance. */
  unwatch: (log: string) => void
  /**
   * After each pass over the queued clients (it may span several turns): when it began
   * (performance.now()), and the oldest acceptedAt of the deliveries to live clients queued
   * before it began (null: none had one); for metrics.
   */
  flushed?: (started: number, oldestAcceptedAt: number | null) => void
}

export class Hub {
  readonly clients = new Set<Client>()
  private readonly groups = new Map<string, Group>()
  /** log -> the groups that read it (BROADCAST: every group). */
  private readonly index = new Map<string, Set<Group>>()
  /** log -> this instance's newest position in it (absent: none yet). */
  private readonly heads = new Map<string, string>()
  /** Logs subscribed and with a known head; clients of other logs wait. */
  private readonly readyLogs = new Set<string>()
  private readonly opts: HubOptions
  /**
   * Clients with queued frames, oldest first; `dirtyHead` is the next one to write. A pass
   * writes them a slice per event-loop turn, so events that arrive meanwhile join the
   * queues of the clients not yet written: they get both in one write.
   */
  private dirty: Client[] = []
  private dirtyHead = 0
  private flushScheduled = false
  private readonly flushNow = (): void => this.flushSlice()
  /** The last chunk joined from several frames, shared by the next client with the same frames. */
  private lastQueue: Buffer[] = []
  private lastChunk: Buffer | null = null
  /** The oldest acceptedAt of the deliveries to live clients since the current pass began. */
  private oldestAccepted = Infinity
  /** The pass under way (for metrics): the dirty clients left in it, when it began, its oldest acceptedAt. */
  private passLeft = 0
  private passStarted = 0
  private passOldest = Infinity
  /** Queued clients written so far (a count that only grows), and the publishes waiting for it. */
  private written = 0
  private readonly pacedWaiters: Array<{ at: number, resolve: () => void }> = []
  delivered = 0
  dropped = 0
  slowDisconnected = 0
  replayed = 0

  constructor (opts: HubOptions) {
    this.opts = opts
  }

  get size (): number {
    return this.clients.size
  }

  /** The logs with at least one local reader. */
  logs (): string[] {
    return [...this.index.keys()]
  }

  /** This instance's newest position in `log`, null when it has none. */
  head (log: string): string | null {
    return this.heads.get(log) ?? null
  }

  /** The logs of the client's group, in cursor order. */
  logsOf (client: Client): string[] {
    return client.group?.logs ?? streamLogs(client.topics)
  }

  /**
   * Adds a client. Live at once when every log it reads is ready; else (or with
   * `held`) its deliveries wait until `goLive`, or until its logs are ready.
   */
  add (client: Client, held = false): void {
    const logs = streamLogs(client.topics)
    const key = logs.join(',')
    let group = this.groups.get(key)
    if (group === undefined) {
      group = new Group(key, logs)
      this.groups.set(key, group)
      for (const log of logs) {
        let set = this.index.get(log)
        if (set === undefined) {
          set = new Set()
          this.index.set(log, set)
          this.opts.watch(log)
        }
        set.add(group)
      }
    }
    client.group = group
    group.clients.add(client)
    this.clients.add(client)
    const waiting = logs.some(log => !this.readyLogs.has(log))
    if (held || waiting) {
      client.held = []
      client.cursor = logs.map(log => this.heads.get(log) ?? null)
      client.waiting = !held
    }
    if (!client.waiting) this.open(client)
  }

  private open (client: Client): void {
    if (client.opening === null) return
    client.sink.write(client.opening)
    client.opening = null
  }

  /** Forgets a client whose socket is gone; nothing more is written to it. */
  remove (client: Client): void {
    client.closed = true
    if (!this.clients.delete(client)) return
    client.held = null
    const group = client.group
    if (group === null) return
    group.clients.delete(client)
    if (group.clients.size > 0) return
    this.groups.delete(group.key)
    for (const log of group.logs) {
      const set = this.index.get(log)
      if (set === undefined) continue
      set.delete(group)
      if (set.size === 0) {
        this.index.delete(log)
        this.readyLogs.delete(log)
        this.heads.delete(log)
        this.opts.unwatch(log)
      }
    }
  }

  /**
   * The bus subscribed to `log` and read its newest position (`head`; null: the log is
   * empty; undefined: keep the one this instance has). Clients that waited for it go live.
   */
  ready (log: string, head: string | null | undefined): void {
    if (!this.index.has(log)) return
    if (head !== undefined) {
      if (head === null) this.heads.delete(log)
      else this.heads.set(log, head)
    }
    this.readyLogs.add(log)
    for (const group of this.index.get(log)!) {
      const i = group.logs.indexOf(log)
      const all = group.logs.every(l => this.readyLogs.has(l))
      for (const client of group.clients) {
        if (!client.waiting || client.cursor === null) continue
        // A new client starts at the head: what came before it is none of its business.
        client.cursor[i] ??= this.heads.get(log) ?? null
        if (all) {
          client.waiting = false
          this.goLive(client, client.cursor)
        }
      }
    }
  }

  /** An event of `log` that the clients already got moved on to `position`. */
  advance (log: string, position: string): void {
    if (this.index.has(log)) this.heads.set(log, position)
  }

  deliver (d: Delivery): void {
    const groups = this.index.get(d.log)
    if (groups === undefined) return
    if (d.position !== null) this.heads.set(d.log, d.position)
    const before = this.delivered
    for (const group of groups) {
      if (d.uid !== null && d.topics !== null && group.entry(d.topics) !== d.log) continue
      let frame: Buffer | null = null
      for (const client of group.clients) {
        if (client.held !== null) {
          this.hold(client, d)
        } else if (client.cursor !== null) {
          this.deliverOwn(client, d)
          if (this.caughtUp(client)) this.settle(client)
        } else if (d.uid === null || client.replayed === null || !client.replayed.delete(d.uid)) {
          frame ??= this.frame(group.logs, null, d)
          this.send(client, frame)
        }
      }
    }
    if (d.acceptedAt !== undefined && d.acceptedAt < this.oldestAccepted && this.delivered !== before) this.oldestAccepted = d.acceptedAt
  }

  /**
   * Writes a replayed event to a client that is still held back, moving its cursor.
   * Returns false when the socket wants a 'drain' first: a replay can exceed the buffer.
   */
  replay (client: Client, d: Delivery, entryLater = false): boolean {
    if (client.closed) return true
    this.moveCursor(client, d)
    // Its copy through the group's entry log is yet to come: that one must not repeat it.
    if (entryLater && d.uid !== null) (client.replayed ??= new Set()).add(d.uid)
    this.replayed++
    this.delivered++
    client.idle = false
    return client.sink.write(this.frame(this.logsOf(client), client.cursor, d))
  }

  /** Writes a frame to a held client as is (a reset). */
  signal (client: Client, frame: Buffer): boolean {
    if (client.closed) return true
    client.idle = false
    return client.sink.write(frame)
  }

  /**
   * Ends a client's catch-up at `cursor`: the held deliveries newer than it follow, then
   * live ones. While this instance is behind the client in some log (the client comes
   * from an instance that was ahead), it stays held until this one catches up.
   */
  goLive (client: Client, cursor: Array<string | null>): void {
    if (client.closed || client.held === null) return
    this.open(client)
    client.cursor = cursor
    const held = client.held
    client.held = null
    client.heldBytes = 0
    for (const d of held) this.deliverOwn(client, d)
    if (this.caughtUp(client)) this.settle(client)
  }

  /** Writes `frame` to every live client that had nothing written since the last tick. */
  heartbeat (frame: Buffer): void {
    for (const client of this.clients) {
      if (client.idle && client.held === null && !client.closed) client.sink.write(frame)
      client.idle = true
    }
  }

  /** Ends a stream cleanly, `last` its final bytes; the client reconnects and resumes. */
  close (client: Client, last?: Buffer): void {
    if (client.closed) return
    // Frames queued for its next write go out first (that write may cut off a slow client).
    this.writeQueued(client)
    if (client.closed) return
    this.remove(client)
    client.sink.end(last)
  }

  /** Ends the streams that read `log` (its history was lost here: they resume and learn it). */
  closeLog (log: string): void {
    this.flush()
    const groups = this.index.get(log)
    if (groups === undefined) return
    for (const group of [...groups]) for (const client of [...group.clients]) this.close(client)
  }

  /** Ends every stream cleanly (shutdown); clients reconnect elsewhere and resume. */
  closeAll (): void {
    this.flush()
    for (const client of this.clients) this.close(client)
  }

  /**
   * Null when no clients wait to be written; else a promise that settles once the hub has
   * written a PACE_PARTS-th of those that wait now (or all of them). A publisher that sends its
   * next event after each answer then adds events at the pace the sockets take them: each
   * write carries a few events, not every one that came during a pass.
   */
  paced (): Promise<void> | null {
    const waiting = this.dirty.length - this.dirtyHead
    if (waiting === 0) return null
    const at = this.written + Math.ceil(waiting / PACE_PARTS)
    return new Promise(resolve => this.pacedWaiters.push({ at, resolve }))
  }

  private settlePaced (): void {
    const waiters = this.pacedWaiters
    if (waiters.length === 0) return
    const all = this.dirtyHead === this.dirty.length
    let kept = 0
    for (const w of waiters) {
      if (all || w.at <= this.written) w.resolve()
      else waiters[kept++] = w
    }
    waiters.length = kept
  }

  /** Writes every client's queued frames now, each as one chunk. */
  flush (): void {
    if (this.dirtyHead < this.dirty.length && this.passLeft === 0) this.beginPass()
    this.written += this.dirty.length - this.dirtyHead
    while (this.dirtyHead < this.dirty.length) this.writeQueued(this.dirty[this.dirtyHead++])
    this.dirty = []
    this.dirtyHead = 0
    if (this.passLeft > 0) this.endPass()
    this.settlePaced()
  }

  /**
   * Writes queued clients, oldest first, for about SLICE_MS, then yields to the event loop
   * (publishes arriving meanwhile are read and queued) and goes on in the next turn. A
   * client written in this pass that gets another event joins the end of the line.
   */
  private flushSlice (): void {
    this.flushScheduled = false
    const dirty = this.dirty
    const deadline = performance.now() + SLICE_MS
    let n = 0
    while (this.dirtyHead < dirty.length) {
      if (this.passLeft === 0) this.beginPass()
      this.writeQueued(dirty[this.dirtyHead++])
      if (--this.passLeft === 0) this.endPass()
      if ((++n & 63) === 0 && performance.now() >= deadline) break
    }
    this.written += n
    this.settlePaced()
    if (this.dirtyHead === dirty.length) {
      this.dirty = []
      this.dirtyHead = 0
      return
    }
    // Drop the written part once it is most of the array, so a steady stream keeps it small.
    if (this.dirtyHead > 1024 && this.dirtyHead * 2 > dirty.length) {
      this.dirty = dirty.slice(this.dirtyHead)
      this.dirtyHead = 0
    }
    this.scheduleFlush()
  }

  /**
   * A pass writes the clients queued when it begins (those queued meanwhile wait for the
   * next one, or get their new frames with the write they were waiting for): its duration
   * and the age of its oldest event at its first and last write go to `flushed`.
   */
  private beginPass (): void {
    this.passLeft = this.dirty.length - this.dirtyHead
    this.passStarted = performance.now()
    this.passOldest = this.oldestAccepted
    this.oldestAccepted = Infinity
  }

  private endPass (): void {
    this.passLeft = 0
    this.opts.flushed?.(this.passStarted, this.passOldest === Infinity ? null : this.passOldest)
  }

  private scheduleFlush (): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    setImmediate(this.flushNow)
  }

  /** One client's queued frames as one chunk: one syscall per client per pass. */
  private writeQueued (client: Client): void {
    const queue = client.queue
    const bytes = client.queuedBytes
    if (bytes === 0) return
    client.queue = []
    client.queuedBytes = 0
    if (client.closed) return
    let chunk: Buffer
    if (queue.length === 1) {
      chunk = queue[0]
    } else if (this.lastChunk !== null && sameFrames(queue, this.lastQueue)) {
      // Clients of one group queued the same frames: join them once, share the chunk.
      chunk = this.lastChunk
    } else {
      chunk = Buffer.concat(queue, bytes)
      this.lastQueue = queue
      this.lastChunk = chunk
    }
    if (!client.sink.write(chunk) && client.sink.writableLength > this.opts.bufferBytes) {
      this.disconnectSlow(client, queue.length)
    }
  }

  /** A delivery to a client with a cursor of its own: skipped when it had it already. */
  private deliverOwn (client: Client, d: Delivery): void {
    const logs = this.logsOf(client)
    const i = logs.indexOf(d.log)
    const mine = client.cursor![i]
    if (d.position !== null && mine !== null && compareIds(d.position, mine) <= 0) return
    this.moveCursor(client, d)
    if (d.uid !== null && d.topics !== null && client.group!.entry(d.topics) !== d.log) return
    if (d.uid !== null && client.replayed !== null && client.replayed.delete(d.uid)) return
    this.send(client, this.frame(logs, client.cursor, d))
  }

  private hold (client: Client, d: Delivery): void {
    client.held!.push(d)
    client.heldBytes += d.body.length
    if (client.heldBytes > this.opts.bufferBytes) this.disconnectSlow(client, client.held!.length)
  }

  /** Whether this instance's heads reach the client's own cursor in every log. */
  private caughtUp (client: Client): boolean {
    const logs = this.logsOf(client)
    for (let i = 0; i < logs.length; i++) {
      const mine = client.cursor![i]
      if (mine === null) continue
      const head = this.heads.get(logs[i])
      if (head === undefined || compareIds(head, mine) < 0) return false
    }
    return true
  }

  /** From now on the client shares its group's cursor and frames. */
  private settle (client: Client): void {
    client.cursor = null
    if (client.replayed !== null && client.replayed.size === 0) client.replayed = null
  }

  private moveCursor (client: Client, d: Delivery): void {
    if (d.position === null || client.cursor === null) return
    const i = this.logsOf(client).indexOf(d.log)
    if (i !== -1) client.cursor[i] = d.position
  }

  /** `id:` from `cursor` (null: this instance's heads), then the body; no id for a local-only event. */
  private frame (logs: string[], cursor: Array<string | null> | null, d: Delivery): Buffer {
    if (d.position === null) return d.body
    const positions = cursor ?? logs.map(log => this.heads.get(log) ?? null)
    const head = Buffer.from(`id: ${encodeCursor(positions)}\n`, 'latin1')
    return Buffer.concat([head, d.body], head.length + d.body.length)
  }

  private send (client: Client, frame: Buffer): void {
    if (client.closed) return
    this.delivered++
    client.idle = false
    if (client.queuedBytes === 0) {
      this.dirty.push(client)
      this.scheduleFlush()
    }
    client.queue.push(frame)
    client.queuedBytes += frame.length
  }

  /** Cuts off a client that does not keep up; `lost` frames were in flight to it. */
  private disconnectSlow (client: Client, lost: number): void {
    this.remove(client)
    this.slowDisconnected++
    this.dropped += lost
    client.sink.destroy()
  }
}

function sameFrames (a: Buffer[], b: Buffer[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
