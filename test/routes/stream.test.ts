// GET /stream: headers and first bytes, refusals (permanent, and temporary ones an
// EventSource retries by itself), resume, MAX_CLIENTS.
import { EventSource } from 'eventsource'
import t, { type Test } from 'tap'
import { notify, openStream, requestDuringClose, SseClient, startInstance } from '../helpers/instance.js'

t.test('a stream opens at once with the SSE headers, retry line and comment', async t => {
  const { url } = await startInstance(t, { RETRY_MS: 1234 })
  const c = await openStream(t, `${url}/stream?topic=orders`)
  t.equal(c.status, 200)
  t.match(c.headers['content-type'], /^text\/event-stream/)
  t.equal(c.headers['cache-control'], 'no-cache')
  t.equal(c.headers['x-accel-buffering'], 'no')
  await c.until(x => x.raw.includes('\n\n'), 2000, 'first bytes')
  t.ok(c.raw.startsWith('retry: 1234\n:'), 'retry line and a comment come first')
})

t.test('bad stream requests get 400 naming the problem', async t => {
  const { url } = await startInstance(t, { MAX_TOPICS_PER_STREAM: 2 })
  for (const [query, message] of [
    ['topic=a%20b', /topic "a b" is invalid/],
    ['topic=', /topic "" is invalid/],
    ['topic=a&topic=b&topic=c', /at most 2 topic/],
    ['topic=' + 'x'.repeat(129), /is invalid: 1-128/],
    ['topic=a&lastEventId=garbage', /Last-Event-ID/]
  ] as const) {
    const res = await fetch(`${url}/stream?${query}`)
    t.equal(res.status, 400, query)
    t.match((await res.json()).message, message)
  }
  const res = await fetch(`${url}/stream?topic=a`, { headers: { 'last-event-id': '1-0 id: 2' } })
  t.equal(res.status, 400, 'a Last-Event-ID header that is not an id is refused')
})

t.test('resume with Last-Event-ID or lastEventId replays missed events, then goes live', async t => {
  const { url } = await startInstance(t)
  const first = await SseClient.open(`${url}/stream?topic=r`)
  await notify(url, { topic: 'r', data: 'a' })
  await first.untilEvents(1)
  first.close()
  const seen = first.lastEventId!
  await notify(url, [{ topic: 'r', data: 'b' }, { topic: 'other', data: 'skip' }, { data: 'c' }])
  const header = await openStream(t, `${url}/stream?topic=r`, { 'last-event-id': seen })
  const query = await openStream(t, `${url}/stream?topic=r&lastEventId=${seen}`)
  await notify(url, { topic: 'r', data: 'd' })
  await header.untilEvents(3)
  await query.untilEvents(3)
  t.same(header.events.map(e => e.data), ['b', 'c', 'd'])
  t.same(query.events.map(e => e.data), ['b', 'c', 'd'])
})

t.test('resume from before the history gets a reset event', async t => {
  const { url } = await startInstance(t, { HISTORY_SIZE: 2 })
  const a = await notify(url, { topic: 'h', data: 1 })
  await notify(url, [{ topic: 'h', data: 2 }, { topic: 'h', data: 3 }, { topic: 'h', data: 4 }])
  const c = await openStream(t, `${url}/stream?topic=h`, { 'last-event-id': a.body.id })
  await c.untilEvents(3)
  t.equal(c.events[0].event, 'reset', 'the gap is announced first')
  t.same(c.events.slice(1).map(e => e.data), ['3', '4'], 'then what history still holds')
  const fresh = await openStream(t, `${url}/stream?topic=h`, { 'last-event-id': c.lastEventId! })
  await notify(url, { topic: 'h', data: 5 })
  await fresh.untilEvents(1)
  t.same(fresh.events.map(e => e.data), ['5'], 'resuming from the last replayed id has no gap')
})

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/**
 * A refusal as EventSource must get it to retry by itself: 200, the SSE headers, `retry:`,
 * one `refused` event saying why, then the end; no id. Returns its retry delay in ms.
 */
async function refusedAsStream (t: Test, url: string, status: number, reason: string, headers: Record<string, string> = {}): Promise<number> {
  const c = await openStream(t, url, headers)
  await c.until(x => x.ended, 5000, 'the end of the refusal')
  t.equal(c.status, 200, `${reason}: 200, or EventSource would give up for good`)
  t.match(c.headers['content-type'], /^text\/event-stream/)
  t.equal(c.headers['cache-control'], 'no-cache')
  t.equal(c.headers['x-accel-buffering'], 'no')
  t.equal(c.headers['retry-after'], undefined, 'no Retry-After on a 200')
  const retry = /^retry: (\d+)\n/.exec(c.raw)
  t.ok(retry, 'a retry: line first')
  t.same(c.events, [{ event: 'refused', data: JSON.stringify({ status, reason, retryAfterMs: Number(retry?.[1]) }) }], 'one refused event, without an id')
  t.notMatch(c.raw, /^id:/m, 'Last-Event-ID stays put')
  return Number(retry?.[1])
}

t.test('MAX_CLIENTS: 503 with Retry-After, and to an EventSource a stream that says so and ends', async t => {
  const { url } = await startInstance(t, { MAX_CLIENTS: 2, RETRY_MS: 1500 })
  await openStream(t, `${url}/stream`)
  await openStream(t, `${url}/stream`)
  const res = await fetch(`${url}/stream`)
  t.equal(res.status, 503)
  t.equal(res.headers.get('retry-after'), '2')
  t.match((await res.json()).message, /MAX_CLIENTS/)
  t.equal(await refusedAsStream(t, `${url}/stream?topic=a`, 503, 'max_clients'), 2000, 'retry: what Retry-After says, in ms')
  const resume = await refusedAsStream(t, `${url}/stream?topic=a`, 503, 'max_clients', { 'last-event-id': '1-0' })
  t.equal(resume, 2000, 'also when resuming')
  const text = await (await fetch(`${url}/metrics`)).text()
  t.match(text, /^sse_stream_refusals_total\{reason="max_clients"\} 3$/m, 'counted by reason, both answers')
})

t.test('permanent refusals stay errors, also for an EventSource', async t => {
  const { url } = await startInstance(t, { MAX_CLIENTS: 1 })
  await openStream(t, `${url}/stream`)
  const bad = await openStream(t, `${url}/stream?topic=a%20b`)
  t.equal(bad.status, 400, 'a bad topic is a 400 even at MAX_CLIENTS')
  const badId = await openStream(t, `${url}/stream?topic=a`, { 'last-event-id': 'nope' })
  t.equal(badId.status, 400)
})

t.test('under pressure: 503 with Retry-After, and to an EventSource a stream that says so and ends', async t => {
  const { app, url } = await startInstance(t, { PRESSURE_MAX_HEAP_USED_BYTES: 1, PRESSURE_SAMPLE_INTERVAL_MS: 50, RETRY_MS: 3000 })
  const deadline = Date.now() + 4000
  while (!app.isUnderPressure() && Date.now() < deadline) await sleep(20)
  t.ok(app.isUnderPressure(), 'the instance measured its pressure')
  const res = await fetch(`${url}/stream?topic=t`)
  t.equal(res.status, 503)
  t.equal(res.headers.get('retry-after'), '3')
  t.match((await res.json()).message, /under pressure/)
  t.equal(await refusedAsStream(t, `${url}/stream?topic=t`, 503, 'pressure'), 3000)
  const publish = await fetch(`${url}/notify`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: '{"data":1}' })
  t.equal(publish.status, 503, 'a publish is no stream: it keeps its 503 whatever it accepts')
  t.match(await (await fetch(`${url}/metrics`)).text(), /^sse_stream_refusals_total\{reason="pressure"\} 2$/m, 'publishes are not counted')
})

t.test('over the stream rate limit: 429 with Retry-After, and to an EventSource a stream that retries after the reset', async t => {
  const { url } = await startInstance(t, { RATE_LIMIT_STREAMS: 1, RATE_LIMIT_WINDOW_MS: 20000 })
  await openStream(t, `${url}/stream?topic=t`)
  const res = await fetch(`${url}/stream?topic=t`)
  t.equal(res.status, 429)
  const retryAfter = Number(res.headers.get('retry-after'))
  t.ok(retryAfter >= 1 && retryAfter <= 20, `Retry-After ${retryAfter} s: until the window resets`)
  t.match((await res.json()).message, /at most 1 new streams per 20 s/)
  const retry = await refusedAsStream(t, `${url}/stream?topic=t`, 429, 'rate_limit')
  t.ok(retry >= 1000 && retry <= 20000 && retry % 1000 === 0, `retry: ${retry}: the reset, in whole seconds as Retry-After says`)
  t.match(await (await fetch(`${url}/metrics`)).text(), /^sse_stream_refusals_total\{reason="rate_limit"\} 2$/m)
})

t.test('shutting down: a plain 503, and to an EventSource a stream that says so and ends, with the CORS headers', async t => {
  const origin = 'https://app.example'
  const plain = await startInstance(t, { CORS_ORIGINS: origin })
  const answer = await requestDuringClose(plain.app, plain.url, 'GET /stream?topic=t HTTP/1.1\r\nhost: x\r\n\r\n')
  t.match(answer, /^HTTP\/1.1 503 /)
  t.notMatch(answer, /retry-after/i, 'no Retry-After: the retry goes to another instance')
  t.match(answer, /\r\n\r\n\{"statusCode":503,"error":"Service Unavailable","message":"Service Unavailable"\}$/)

  const sse = await startInstance(t, { CORS_ORIGINS: origin, RETRY_MS: 1000 })
  const streamed = await requestDuringClose(sse.app, sse.url, `GET /stream?topic=t HTTP/1.1\r\nhost: x\r\norigin: ${origin}\r\naccept: text/event-stream\r\n\r\n`)
  t.match(streamed, /^HTTP\/1.1 200 OK\r\n/)
  t.match(streamed, /\r\naccess-control-allow-origin: https:\/\/app.example\r\n/i, 'CORS headers kept: the page can read it')
  t.match(streamed, /\r\ncontent-type: text\/event-stream\r\n/i)
  t.match(streamed, /\r\ncache-control: no-cache\r\n/i)
  t.match(streamed, /\r\nx-accel-buffering: no\r\n/i)
  t.match(streamed, /\r\n\r\nretry: 1000\nevent: refused\ndata: \{"status":503,"reason":"shutdown","retryAfterMs":1000\}\n\n$/)
  t.equal(sse.app.refusals.refused.shutdown, 1)
})

t.test('an EventSource refused at MAX_CLIENTS reconnects by itself and gets events once a slot frees', async t => {
  const { app, url } = await startInstance(t, { MAX_CLIENTS: 1, RETRY_MS: 1000 })
  const holder = await SseClient.open(`${url}/stream?topic=t`)
  const es = new EventSource(`${url}/stream?topic=t`)
  t.teardown(() => es.close())
  const seen = { refused: 0 }
  const states: number[] = []
  const received: string[] = []
  es.addEventListener('refused', () => { seen.refused++ })
  es.addEventListener('error', () => { states.push(es.readyState) })
  es.addEventListener('message', e => { received.push(e.data) })
  const deadline = Date.now() + 10000
  while (seen.refused < 2 && Date.now() < deadline) await sleep(50)
  t.ok(seen.refused >= 2, `refused ${seen.refused} times, retrying by itself`)
  t.equal(app.hub.size, 1, 'the slot is still taken')
  holder.close()
  // Published until it arrives: the EventSource comes back on its own time (retry:).
  while (received.length === 0 && Date.now() < deadline) {
    await notify(url, { topic: 't', data: 'hello' })
    await sleep(200)
  }
  t.equal(received[0], 'hello', 'the same EventSource, never reopened, gets the event')
  t.notOk(states.includes(EventSource.CLOSED), 'it never gave up')
  t.equal(es.readyState, EventSource.OPEN)
})
