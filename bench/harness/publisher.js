// Publishes the events of one run: E events of P bytes, as a burst with `concurrency`
// requests in flight or at `rate` events/s, over keep-alive connections. Each payload
// is "s=<seq> t=<µs> xxx..." (P bytes), t in CLOCK_MONOTONIC µs: the time the event was
// meant to be sent (the burst's start, or its slot at `rate`), not when its request got
// out: a server that answers slowly (nchan delivers before it answers) would otherwise
// hold back the later sends and hide its queue (coordinated omission). With one request
// in flight and no rate, the publisher is the sequential kind (next POST after the
// previous answer) and each event is stamped when it is sent.
import http from 'node:http'

function nowUs () {
  const t = process.hrtime()
  return t[0] * 1e6 + t[1] / 1e3
}

export function payload (seq, bytes, atUs = nowUs()) {
  const head = `s=${seq} t=${Math.round(atUs)} `
  return head.length >= bytes ? head : head + 'x'.repeat(bytes - head.length)
}

/** A request body for the target: JSON for this service and the naive server, raw for nchan. */
export function body (kind, topic, events) {
  if (kind === 'raw') return events[0]
  if (events.length === 1) return JSON.stringify({ topic, data: events[0] })
  return JSON.stringify(events.map(data => ({ topic, data })))
}

function post (agent, target, text, timeoutMs) {
  return new Promise(resolve => {
    let settled = false
    const done = answer => {
      if (settled) return
      settled = true
      resolve(answer)
    }
    const req = http.request({
      agent,
      host: target.host,
      port: target.port,
      path: target.publishPath,
      method: 'POST',
      headers: { 'content-type': target.kind === 'raw' ? 'text/plain' : 'application/json', 'content-length': Buffer.byteLength(text) }
    }, res => {
      let text = ''
      if (res.statusCode >= 300) res.on('data', chunk => { text += chunk })
      else res.resume()
      res.on('end', () => done({ status: res.statusCode, text, retryAfter: Number(res.headers['retry-after'] ?? 1) }))
      res.on('error', err => done({ status: err.code ?? 'error', text: err.message }))
    })
    // A server that never answers ends the request, not the run: 'timeout' counts as refused.
    req.setTimeout(timeoutMs, () => {
      done({ status: 'timeout', text: `no answer within ${timeoutMs} ms` })
      req.destroy()
    })
    req.on('error', err => done({ status: err.code ?? 'error', text: err.message }))
    req.end(text)
  })
}

/**
 * Sends `events` events (seq 0..events-1) to `targets`, alternating between them.
 * `batch` > 1 puts that many events in one request (JSON targets only). A 503 is
 * retried like a well-behaved publisher would, after its Retry-After (at most 2 s),
 * up to `retries` times; `retried` counts those, `statuses` the final answers. A request
 * without an answer after `timeoutMs` ends as status 'timeout'.
 */
export async function publish ({ targets, events, bytes, topic = 'bench', concurrency = 16, rate = 0, batch = 1, retries = 3, timeoutMs = 30000 }) {
  const agents = targets.map(() => new http.Agent({ keepAlive: true, maxSockets: concurrency }))
  const statuses = {}
  let firstError = null
  let retried = 0
  const startUs = nowUs()
  let next = 0
  let request = 0
  const lane = async () => {
    while (next < events) {
      const first = next
      const count = Math.min(batch, events - first)
      next += count
      const which = request++ % targets.length
      const due = rate > 0 ? startUs + first * 1e6 / rate : startUs
      if (rate > 0) {
        const wait = (due - nowUs()) / 1000
        if (wait > 1) await new Promise(resolve => setTimeout(resolve, wait))
      }
      const datas = []
      // One request in flight: each event is stamped when it is sent (the publisher waits for
      // each answer, as most backends do; the harness measures it this way).
      const at = rate > 0 ? null : concurrency === 1 ? nowUs() : due
      for (let s = first; s < first + count; s++) datas.push(payload(s, bytes, at ?? startUs + s * 1e6 / rate))
      const text = body(targets[which].kind, topic, datas)
      let answer = await post(agents[which], targets[which], text, timeoutMs)
      for (let attempt = 0; answer.status === 503 && attempt < retries; attempt++) {
        if (firstError === null) firstError = `503 ${answer.text.slice(0, 300)}`
        retried += count
        await new Promise(resolve => setTimeout(resolve, Math.min(2, answer.retryAfter) * 1000))
        answer = await post(agents[which], targets[which], text, timeoutMs)
      }
      const { status } = answer
      statuses[status] = (statuses[status] ?? 0) + count
      if (answer.text !== '' && firstError === null) firstError = `${status} ${answer.text.slice(0, 300)}`
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane))
  for (const a of agents) a.destroy()
  return { startUs, endUs: nowUs(), statuses, firstError, retried }
}
