// Local clients and the topic index. Knows nothing of HTTP: a client writes to a Sink.
import { compareIds } from './event-id.js'

/** What the hub needs of a socket (node's ServerResponse fits). */
export interface Sink {
  write (chunk: Buffer): boolean
  readonly writableLength: number
  end (): void
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

export class Hub {
  readonly clients = new Set<Client>()
  private readonly index = new Map<string, Set<Client>>()
  private readonly bufferBytes: number
  private stamp = 0
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

  remove (client: Client): void {
    if (!this.clients.delete(client)) return
    client.pending = null
    for (const topic of client.topics) {
      const set = this.index.get(topic)
      if (set === undefined) continue
      set.delete(client)
      if (set.size === 0) this.index.delete(topic)
    }
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
      if (client.idle && client.pending === null) this.write(client, frame)
      client.idle = true
    }
  }

  /** Ends every stream cleanly (shutdown); clients reconnect elsewhere and resume. */
  closeAll (): void {
    for (const client of this.clients) {
      this.remove(client)
      client.closed = true
      client.sink.end()
    }
  }

  private send (client: Client, d: Delivery): void {
    if (client.pending !== null) {
      client.pending.push(d)
      client.pendingBytes += d.frame.length
      if (client.pendingBytes > this.bufferBytes) this.disconnectSlow(client)
      return
    }
    if (client.after !== null && d.id !== null) {
      if (compareIds(d.id, client.after) <= 0) return
      client.after = null
    }
    this.delivered++
    this.write(client, d.frame)
  }

  private write (client: Client, frame: Buffer): void {
    if (client.closed) return
    client.idle = false
    if (!client.sink.write(frame) && client.sink.writableLength > this.bufferBytes) {
      this.disconnectSlow(client)
    }
  }

  private disconnectSlow (client: Client): void {
    this.remove(client)
    client.closed = true
    this.slowDisconnected++
    this.dropped++
    client.sink.destroy()
  }
}
