// One client process of the fan-out harness: many raw HTTP/1.1 SSE streams over
// net sockets (no http.IncomingMessage per chunk), each bound to a 127.0.0.x source
// address. Per frame it only finds the '\n\n' end, reads the id and the payload's
// "s=<seq> t=<µs>" prefix byte by byte; every SAMPLE-th frame is parsed in full.
// Frames without such a payload are only counted when they are `event: reset` or
// `event: refused` (a resume history could not cover, a temporary refusal).
// Driven by its parent over IPC; exits when told to or when the parent goes away.
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { createHistogram, record, toSparse } from './histogram.js'

const LFLF = Buffer.from('\n\n')
const EVENT_RESET = Buffer.from('event: reset\n')
const EVENT_REFUSED = Buffer.from('event: refused\n')
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)
const SAMPLE_EVERY = Number(process.env.BENCH_SAMPLE_EVERY ?? 1000)
const FULL_FRAME = /^(?:id: ?([^\n]*)\n)?(?:event: ?[^\n]*\n)?data: ?s=(\d+) t=(\d+) x*$/
let frameCounter = 0

// CLOCK_MONOTONIC in µs (process.hrtime's clock, the same in every process on this
// machine), read through performance.now(), which allocates nothing.
const hr = process.hrtime()
const OFFSET_US = hr[0] * 1e6 + hr[1] / 1e3 - performance.now() * 1000
function nowUs () {
  return OFFSET_US + performance.now() * 1000
}

function hexValue (b) {
  if (b >= 48 && b <= 57) return b - 48
  if (b >= 97 && b <= 102) return b - 87
  if (b >= 65 && b <= 70) return b - 55
  return 0
}

class Group {
  constructor (name) {
    this.name = name
    this.clients = []
    this.events = 0
    this.payloadBytes = 0
    this.stride = 0
    this.bits = new Uint8Array(0)
    this.reset()
  }

  reset () {
    this.hist = createHistogram()
    this.deliveries = 0
    this.complete = 0
    this.duplicates = 0
    this.outOfOrder = 0
    this.unexpected = 0
    this.sampled = 0
    this.malformed = 0
    this.closedEarly = 0
    this.resets = 0
    this.refused = 0
    this.replayedClients = 0
    this.replayedUs = 0
    this.firstUs = 0
    this.lastUs = 0
    this.cpu = process.cpuUsage()
  }

  /** `capacity`: slots to hold before the clients connect (a storm's resumes replay at once); `replay`: events whose arrival makes a client "replayed". */
  arm (events, payloadBytes, capacity = 0, replay = 0) {
    this.reset()
    this.events = events
    this.payloadBytes = payloadBytes
    this.replay = replay
    this.stride = (events + 7) >> 3
    const size = this.stride * Math.max(capacity, this.clients.length)
    if (this.bits.length < size) this.bits = new Uint8Array(size)
    else this.bits.fill(0, 0, size)
    for (const c of this.clients) {
      c.unique = 0
      c.lastA = -1
      c.lastB = -1
    }
  }
}

class Client {
  constructor (group, slot) {
    this.group = group
    this.slot = slot
    this.sock = null
    this.status = 0
    this.head = ''
    this.chunked = false
    this.chunkLeft = 0
    this.skip = 0
    this.size = 0
    this.ext = false
    this.ended = false
    this.carry = null
    this.unique = 0
    this.lastA = -1
    this.lastB = -1
    this.closed = false
    this.onHead = null
  }

  /** `len` bytes read into `buf` (shared by all sockets: nothing may keep a view of it). */
  onData (buf, len) {
    const t = nowUs()
    let p = 0
    if (this.status === 0) {
      this.head += buf.toString('latin1', 0, len)
      const h = this.head.indexOf('\r\n\r\n')
      if (h === -1) {
        if (this.head.length > 16384) this.sock.destroy()
        return
      }
      const head = this.head.slice(0, h)
      p = h + 4 - (this.head.length - len)
      this.head = ''
      this.status = Number(head.slice(9, 12)) || 1
      this.chunked = /\r\ntransfer-encoding:[ \t]*chunked/i.test(head)
      const done = this.onHead
      this.onHead = null
      if (done !== null) done(this.status)
      if (this.status !== 200) {
        this.sock.destroy()
        return
      }
    }
    if (!this.chunked) {
      if (p < len) this.feed(buf, p, len, t)
      return
    }
    while (p < len) {
      if (this.chunkLeft > 0) {
        const end = Math.min(len, p + this.chunkLeft)
        this.feed(buf, p, end, t)
        this.chunkLeft -= end - p
        p = end
        if (this.chunkLeft === 0) this.skip = 2
      } else if (this.skip > 0) {
        this.skip--
        p++
      } else {
        const b = buf[p++]
        if (b === 10) {
          if (this.size === 0) {
            this.ended = true
            return
          }
          this.chunkLeft = this.size
          this.size = 0
          this.ext = false
        } else if (b === 59) {
          this.ext = true
        } else if (b !== 13 && !this.ext) {
          this.size = this.size * 16 + hexValue(b)
        }
      }
    }
  }

  /** Body bytes [start, end): whole frames now, a partial one kept for later. */
  feed (buf, start, end, t) {
    if (this.carry !== null) {
      buf = Buffer.concat([this.carry, buf.subarray(start, end)])
      start = 0
      end = buf.length
      this.carry = null
    }
    let p = start
    while (p < end) {
      const e = buf.indexOf(LFLF, p)
      if (e === -1 || e + 2 > end) {
        this.carry = Buffer.from(buf.subarray(p, end))
        return
      }
      this.frame(buf, p, e + 1, t)
      p = e + 2
    }
  }

  /** One frame, lines in [s, e) each ending in '\n'. Frames without data (comments) are skipped. */
  frame (buf, s, e, t) {
    let p = s
    let a = -1
    let b = 0
    let seq = -1
    let ts = 0
    while (p < e) {
      const c0 = buf[p]
      if (c0 === 105 && buf[p + 1] === 100 && buf[p + 2] === 58) { // "id:"
        p += 3
        if (buf[p] === 32) p++
        a = 0
        let d
        while ((d = buf[p] - 48) >= 0 && d <= 9) { a = a * 10 + d; p++ }
        while (p < e && buf[p] !== 10 && ((d = buf[p] - 48) < 0 || d > 9)) p++
        while ((d = buf[p] - 48) >= 0 && d <= 9) { b = b * 10 + d; p++ }
        while (p < e && buf[p] !== 10) p++
        p++
      } else if (c0 === 100 && buf[p + 4] === 58) { // "data:"
        p += 5
        if (buf[p] === 32) p++
        if (buf[p] === 115 && buf[p + 1] === 61) { // "s="
          p += 2
          seq = 0
          let d
          while ((d = buf[p] - 48) >= 0 && d <= 9) { seq = seq * 10 + d; p++ }
          if (buf[p + 1] === 116 && buf[p + 2] === 61) { // " t="
            p += 3
            while ((d = buf[p] - 48) >= 0 && d <= 9) { ts = ts * 10 + d; p++ }
          }
        }
        break
      } else {
        if (c0 === 101) this.eventLine(buf, p)
        while (p < e && buf[p] !== 10) p++
        p++
      }
    }
    if (seq < 0) return
    const g = this.group
    if (++frameCounter % SAMPLE_EVERY === 0) checkFrame(g, buf.toString('utf8', s, e - 1), a, b, seq, ts)
    g.deliveries++
    if (g.firstUs === 0) g.firstUs = t
    g.lastUs = t
    record(g.hist, t - ts)
    if (seq >= g.events) {
      g.unexpected++
      return
    }
    const i = this.slot * g.stride + (seq >> 3)
    const mask = 1 << (seq & 7)
    if ((g.bits[i] & mask) !== 0) {
      g.duplicates++
      return
    }
    g.bits[i] |= mask
    if (a >= 0) {
      if (a < this.lastA || (a === this.lastA && b <= this.lastB)) {
        g.outOfOrder++
      } else {
        this.lastA = a
        this.lastB = b
      }
    }
    if (++this.unique === g.replay) {
      g.replayedClients++
      g.replayedUs = t
    }
    if (this.unique === g.events) g.complete++
  }

  eventLine (buf, p) {
    if (buf.compare(EVENT_RESET, 0, EVENT_RESET.length, p, p + EVENT_RESET.length) === 0) this.group.resets++
    else if (buf.compare(EVENT_REFUSED, 0, EVENT_REFUSED.length, p, p + EVENT_REFUSED.length) === 0) this.group.refused++
  }
}

/** The full parse of a sampled frame: it must agree with the cheap one and carry P bytes. */
function checkFrame (g, text, a, b, seq, ts) {
  g.sampled++
  const m = FULL_FRAME.exec(text)
  if (m === null) {
    g.malformed++
    return
  }
  const dataLength = text.length - text.indexOf('s=' + m[2] + ' ')
  const idOk = m[1] === undefined ? a === -1 : m[1].startsWith(String(a))
  if (Number(m[2]) !== seq || Number(m[3]) !== ts || !idOk || (g.payloadBytes > 0 && dataLength !== g.payloadBytes)) {
    g.malformed++
  }
}

const groups = new Map()

function groupOf (name) {
  let g = groups.get(name)
  if (g === undefined) {
    g = new Group(name)
    groups.set(name, g)
  }
  return g
}

function openClient (g, target, localAddress) {
  return new Promise(resolve => {
    const c = new Client(g, g.clients.length)
    g.clients.push(c)
    let settled = false
    const settle = (status) => {
      if (settled) return
      settled = true
      resolve(status)
    }
    c.onHead = settle
    // onread: one shared buffer for every socket and a direct callback, no stream 'data'.
    const sock = net.connect({
      host: target.host,
      port: target.port,
      localAddress,
      onread: { buffer: READ_BUFFER, callback: (n, buf) => { c.onData(buf, n) } }
    })
    c.sock = sock
    sock.on('connect', () => {
      sock.write(`GET ${target.path} HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`)
    })
    sock.on('error', err => settle(err.code ?? 'error'))
    sock.on('close', () => {
      if (!c.closed && c.status === 200) g.closedEarly++
      c.closed = true
      settle('closed')
    })
  })
}

async function connect ({ group, targets, sources, first, count, concurrency, keepSlots = false }) {
  const g = groupOf(group)
  const started = Date.now()
  const statuses = {}
  let next = 0
  const lane = async () => {
    while (next < count) {
      const i = first + next++
      const status = await openClient(g, targets[i % targets.length], sources[i % sources.length])
      statuses[status] = (statuses[status] ?? 0) + 1
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane))
  // Drop the failed ones so slots stay dense and `complete` counts only live streams
  // (armed before connecting, the slots keep what their clients received).
  const live = g.clients.filter(c => c.status === 200 && !c.closed)
  for (const c of g.clients) if (c.status !== 200 && c.sock !== null) c.sock.destroy()
  g.clients = live
  if (!keepSlots) live.forEach((c, i) => { c.slot = i })
  return { ok: live.length, statuses, ms: Date.now() - started }
}

function status (name) {
  const g = groupOf(name)
  return { deliveries: g.deliveries, complete: g.complete, clients: g.clients.length, lastUs: g.lastUs, closedEarly: g.closedEarly, replayedClients: g.replayedClients, replayedUs: g.replayedUs, resets: g.resets, refused: g.refused }
}

function collect (name) {
  const g = groupOf(name)
  const cpu = process.cpuUsage(g.cpu)
  let missing = 0
  let clientsMissing = 0
  for (const c of g.clients) {
    if (c.unique < g.events) {
      missing += g.events - c.unique
      clientsMissing++
    }
  }
  return {
    clients: g.clients.length,
    deliveries: g.deliveries,
    complete: g.complete,
    missing,
    clientsMissing,
    duplicates: g.duplicates,
    outOfOrder: g.outOfOrder,
    unexpected: g.unexpected,
    sampled: g.sampled,
    malformed: g.malformed,
    closedEarly: g.closedEarly,
    resets: g.resets,
    refused: g.refused,
    replayedClients: g.replayedClients,
    replayedUs: g.replayedUs,
    firstUs: g.firstUs,
    lastUs: g.lastUs,
    cpuUs: cpu.user + cpu.system,
    cpuSysUs: cpu.system,
    hist: toSparse(g.hist)
  }
}

function close (name) {
  const g = groups.get(name)
  if (g === undefined) return { closed: 0 }
  for (const c of g.clients) {
    c.closed = true
    c.sock.destroy()
  }
  groups.delete(name)
  return { closed: g.clients.length }
}

const handlers = {
  connect,
  arm: ({ group, events, payloadBytes, capacity, replay }) => { groupOf(group).arm(events, payloadBytes, capacity, replay); return {} },
  status: ({ group }) => status(group),
  collect: ({ group }) => collect(group),
  close: ({ group }) => close(group),
  exit: () => { setImmediate(() => process.exit(0)); return {} }
}

process.on('message', async (msg) => {
  try {
    const result = await handlers[msg.cmd](msg)
    process.send({ id: msg.id, ok: true, result })
  } catch (err) {
    process.send({ id: msg.id, ok: false, error: err.stack })
  }
})
process.on('disconnect', () => process.exit(0))
