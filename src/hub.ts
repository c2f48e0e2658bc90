// Local clients and the topic index. Knows nothing of HTTP: a client writes to a Sink.
import { compareIds } from './event-id.js'

/** What the hub needs of a socket (node's ServerResponse or net.Socket fit). */
export interface Sink {
  write (chunk: Buffer): boolean
  readonly writableLength: number
  end (chunk?: Buffer): void
  destroy (): void
}

/** One event as the hub delivers it: `topics` null is a broadcast. */
export interface Delivery {
  id: string | null
  topics: string[] | null
  frame: Buffer
}

export class Client {
  readonly topics: string[]
  readonly sink: Sink
  /** Deliveries held back while the client's history is replayed; null once live. */
  pending: Delivery[] | null = null
  pendingBytes = 0
  /** After a replay: skip live events up to this id (they were replayed already). */
  after: string | null = null
  /** Frames delivered in this event-loop turn, written together at its end. */
  queue: Buffer[] = []
  queuedBytes = 0
  /** Last multi-topic delivery this client got, so one event reaches it once. */
  stamp = 0
  /** Nothing written since the last heartbeat tick. */
  idle = true
  closed = false

  constructor (sink: Sink, topics: string[]) {
    this.sink = sink
    this.topics = topics
  }
}

export interface HubOptions {
  /** A client whose unsent bytes exceed this is disconnected. */
  bufferBytes: number
}

function sameFrames (a: Buffer[], b: Buffer[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

export class Hub {
  readonly clients = new Set<Client>()
  private readonly index = new Map<string, Set<Client>>()
  private readonly bufferBytes: number
  private stamp = 0
  /** Clients with queued frames, flushed once per event-loop turn. */
  private dirty: Client[] = []
  private flushScheduled = false
  private readonly flushNow = (): void => this.flush()
  delivered = 0
  dropped = 0
  slowDisconnected = 0
  replayed = 0

  constructor (opts: HubOptions) {
    this.bufferBytes = opts.bufferBytes
  }

  get size (): number {
    return this.clients.size
  }

  /** Adds a client; with `replaying`, deliveries wait until `goLive`. */
  add (client: Client, replaying = false): void {
    if (replaying) client.pending = []
    this.clients.add(client)
    for (const topic of client.topics) {
      let set = this.index.get(topic)
      if (set === undefined) {
        set = new Set()
        this.index.set(topic, set)
      }
      set.add(client)
    }
  }

  /** Forgets a client whose socket is gone; nothing more is written to it. */
  remove (client: Client): void {
    client.closed = true
    if (!this.clients.delete(client)) return
    client.pending = null
    for (const topic of client.topics) {
      const set = this.index.get(topic)
      if (set === undefined) continue
      set.delete(client)
      if (set.size === 0) this.index.delete(topic)
    }
  }

  /** Whether any client would get an event of `topics` (null: a broadcast). */
  wants (topics: string[] | null): boolean {
    if (this.clients.size === 0) return false
    if (topics === null) return true
    for (const topic of topics) if (this.index.has(topic)) return true
    return false
  }

  /** Topics that have at least one local client. */
  topics (): string[] {
    return [...this.index.keys()]
  }

  deliver (d: Delivery): void {
    if (d.topics === null) {
      for (const client of this.clients) this.send(client, d)
    } else if (d.topics.length === 1) {
      const set = this.index.get(d.topics[0])
      if (set !== undefined) for (const client of set) this.send(client, d)
    } else {
      const stamp = ++this.stamp
      for (const topic of d.topics) {
        const set = this.index.get(topic)
        if (set === undefined) continue
        for (const client of set) {
          if (client.stamp === stamp) continue
          client.stamp = stamp
          this.send(client, d)
        }
      }
    }
  }

  /**
   * Writes a replayed frame to a client that is still held back. Returns false when the
   * socket wants a 'drain' first: a replay can be far larger than the send buffer.
   */
  replay (client: Client, frame: Buffer): boolean {
    if (client.closed) return true
    this.replayed++
    this.delivered++
    client.idle = false
    return client.sink.write(frame)
  }

  /**
   * Ends the replay: from now on the client gets live events, but only those newer than
   * `cursor`; events this instance has yet to receive may already have been replayed.
   */
  goLive (client: Client, cursor: string | null): void {
    const pending = client.pending
    client.pending = null
    client.pendingBytes = 0
    client.after = cursor
    if (pending === null) return
    for (const d of pending) this.send(client, d)
  }

  /** Writes `frame` to every live client that had nothing written since the last tick. */
  heartbeat (frame: Buffer): void {
    for (const client of this.clients) {
      if (client.idle && client.pending === null && !client.closed) client.sink.write(frame)
      client.idle = true
    }
  }

  /** Ends a stream cleanly, `last` its final bytes; the client reconnects and resumes. */
  close (client: Client, last?: Buffer): void {
    if (client.closed) return
    this.remove(client)
    client.sink.end(last)
  }

  /** Ends every stream cleanly (shutdown); clients reconnect elsewhere and resume. */
  closeAll (): void {
    this.flush()
    for (const client of this.clients) this.close(client)
  }

  /** Writes each client's queued frames as one chunk: one syscall per client per turn. */
  flush (): void {
    this.flushScheduled = false
    const dirty = this.dirty
    this.dirty = []
    // Clients of one topic got the same frames this turn: join them once, share the chunk.
    let lastQueue: Buffer[] = []
    let lastChunk: Buffer | null = null
    for (const client of dirty) {
      const queue = client.queue
      const bytes = client.queuedBytes
      client.queue = []
      client.queuedBytes = 0
      if (client.closed) continue
      let chunk: Buffer
      if (queue.length === 1) {
        chunk = queue[0]
      } else if (lastChunk !== null && sameFrames(queue, lastQueue)) {
        chunk = lastChunk
      } else {
        chunk = Buffer.concat(queue, bytes)
        lastQueue = queue
        lastChunk = chunk
      }
      if (!client.sink.write(chunk) && client.sink.writableLength > this.bufferBytes) {
        this.disconnectSlow(client, queue.length)
      }
    }
  }

  private send (client: Client, d: Delivery): void {
    if (client.pending !== null) {
      client.pending.push(d)
      client.pendingBytes += d.frame.length
      if (client.pendingBytes > this.bufferBytes) this.disconnectSlow(client, client.pending.length)
      return
    }
    if (client.after !== null && d.id !== null) {
      if (compareIds(d.id, client.after) <= 0) return
      client.after = null
    }
    if (client.closed) return
    this.delivered++
    client.idle = false
    if (client.queuedBytes === 0) {
      this.dirty.push(client)
      if (!this.flushScheduled) {
        this.flushScheduled = true
        setImmediate(this.flushNow)
      }
    }
    client.queue.push(d.frame)
    client.queuedBytes += d.frame.length
  }

  /** Cuts off a client that does not keep up; `lost` frames were in flight to it. */
  private disconnectSlow (client: Client, lost: number): void {
    this.remove(client)
    this.slowDisconnected++
    this.dropped += lost
    client.sink.destroy()
  }
}
