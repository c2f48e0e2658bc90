// Hostile input to both endpoints: each gets the right 4xx with a message that says what
// is wrong, and changes nothing for anyone else (an observer stream sees only the
// events of the valid requests; nobody is disconnected).
import t, { type Test } from 'tap'
import { connect } from 'node:net'
import { notify, openStream, SseClient, startInstance, type Instance } from '../helpers/instance.js'
import { TestRedis } from '../helpers/redis.js'

const redis = await TestRedis.start()
t.teardown(() => redis.stop())

async function post (url: string, body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number, message: string }> {
  const res = await fetch(`${url}/notify`, { method: 'POST', headers, body: typeof body === 'string' ? body : new Uint8Array(body) })
  const text = await res.text()
  let message = text
  try { message = JSON.parse(text).message } catch {}
  return { status: res.status, message }
}

/** Raw bytes on a socket, for what fetch refuses to send; resolves with the whole answer. */
async function raw (url: string, request: string | Buffer): Promise<string> {
  const { port } = new URL(url)
  const socket = connect(Number(port), '127.0.0.1')
  let answer = ''
  socket.on('data', chunk => { answer += chunk.toString() })
  socket.on('error', () => {})
  socket.write(request)
  await new Promise<void>(resolve => {
    socket.on('close', () => resolve())
    setTimeout(() => { socket.destroy(); resolve() }, 2000)
  })
  return answer
}

/** An instance (on Redis, where key tricks would bite) with an observer on `t`, `__proto__` and broadcasts. */
async function withObserver (t: Test, config: Record<string, unknown> = {}): Promise<Instance & { observer: SseClient }> {
  const prefix = `adv${Math.random().toString(36).slice(2, 8)}:`
  const instance = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix, ...config })
  const observer = await openStream(t, `${instance.url}/stream?topic=t&topic=__proto__`)
  return { ...instance, observer }
}

/** After the hostile requests: the observer is still there and gets exactly the sentinel. */
async function unaffected (t: Test, { app, url, observer }: Instance & { observer: SseClient }, expected: string[] = []): Promise<void> {
  const sentinel = `sentinel-${Math.random()}`
  t.equal((await notify(url, { topic: 't', data: sentinel })).status, 202, 'a good publish still works')
  await observer.until(c => c.events.some(e => e.data === sentinel), 5000, 'the sentinel')
  t.same(observer.events.map(e => e.data), [...expected, sentinel], 'the observer saw nothing of the bad requests')
  t.notOk(observer.ended, 'the observer was never disconnected')
  t.equal(app.hub.size, 1, 'no bad request left a stream behind')
  const health = await fetch(`${url}/health`)
  t.equal(health.status, 200)
}

t.test('POST /notify: malformed, truncated, empty and non-JSON bodies', async t => {
  const instance = await withObserver(t)
  const cases: Array<[string | Buffer, number, RegExp, Record<string, string>?]> = [
    ['{"topic":"t","data":', 400, /^body is not valid JSON: Unexpected end of JSON input/],
    ['{"topic":"t","data":"abc', 400, /^body is not valid JSON: Unterminated string/],
    ['{"topic":"t" "data":1}', 400, /^body is not valid JSON: .*position 13/],
    ['{"topic":"t","data":1}}', 400, /^body is not valid JSON/],
    ["{'topic':'t','data':1}", 400, /^body is not valid JSON/],
    ['{"topic":"t","data":NaN}', 400, /^body is not valid JSON/],
    ['', 400, /empty/],
    ['null', 400, /^body must be an event object like/],
    ['"t"', 400, /^body must be an event object like/],
    ['[1,2]', 400, /^body\[0\] must be an event object like/],
    ['{"__proto__":{"topic":"t"},"data":1}', 400, /^body must not have __proto__/],
    ['{"constructor":{"prototype":{"x":1}},"data":1}', 400, /^body must not have __proto__ or constructor\.prototype/],
    ['{"topic":"t","data":1}', 415, /takes content-type application\/json, not "text\/plain"/, { 'content-type': 'text/plain' }],
    ['topic=t&data=1', 415, /not "application\/x-www-form-urlencoded"/, { 'content-type': 'application/x-www-form-urlencoded' }],
    ['{"topic":"t","data":1}', 415, /not "application\/jsonx"/, { 'content-type': 'application/jsonx' }],
    ['{"topic":"t","data":1}', 415, /not "multipart\/form-data/, { 'content-type': 'multipart/form-data; boundary=x' }]
  ]
  for (const [body, status, message, headers] of cases) {
    const res = await post(instance.url, body, headers)
    t.equal(res.status, status, `${String(body).slice(0, 40)} (${JSON.stringify(headers ?? 'json')})`)
    t.match(res.message, message)
  }
  const noType = await raw(instance.url, 'POST /notify HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\nConnection: close\r\n\r\n{"topic":"t","data":1}')
  t.match(noType, /^HTTP\/1\.1 415[\s\S]*not a body without content-type/, 'no content-type at all')
  // Declares more than it sends, then hangs up: nothing is published.
  await raw(instance.url, 'POST /notify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"topic":"t","data":"cut')
  await unaffected(t, instance)
})

t.test('POST /notify: bodies over the limit, deep nesting, huge arrays, invalid UTF-8', async t => {
  const instance = await withObserver(t, { BODY_LIMIT_BYTES: 65536, MAX_DATA_DEPTH: 8, MAX_BATCH: 10, MAX_TOPICS_PER_STREAM: 4 })
  const { url } = instance
  const deep = (n: number): string => `{"topic":"x","data":${'['.repeat(n - 1)}${']'.repeat(n - 1)}}`
  const cases: Array<[string | Buffer, number, RegExp]> = [
    [JSON.stringify({ topic: 't', data: 'x'.repeat(70000) }), 413, /too large/i],
    [deep(8), 202, /./],
    [deep(9), 400, /^body nests deeper than 8 levels \(MAX_DATA_DEPTH\)/],
    ['['.repeat(30000) + ']'.repeat(30000), 400, /nests deeper/],
    ['{"topic":"x","data":"[[[[[[[[[[[[[[[[[[[[[[[["}', 202, /./], // brackets in a string do not count
    ['{"topic":"x","data":"\\"[[[[[[[[[[[[[[[[[[[["}', 202, /./], // nor after an escaped quote
    [JSON.stringify(Array.from({ length: 5000 }, () => ({ data: 1 }))), 400, /^body must have at most 10 items/],
    [JSON.stringify({ topic: Array.from({ length: 5000 }, (_, i) => `t${i}`), data: 1 }), 400, /^body\.topic must have at most 4 items/],
    [JSON.stringify({ topic: 'x', data: new Array(30000).fill(0) }), 202, /./],
    [Buffer.concat([Buffer.from('{"topic":"t","data":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), 400, /^body is not valid UTF-8/],
    [Buffer.concat([Buffer.from('{"topic":"t","data":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]), 400, /not valid UTF-8/], // overlong "/"
    [Buffer.concat([Buffer.from('{"topic":"t","data":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]), 400, /not valid UTF-8/], // a surrogate
    [Buffer.concat([Buffer.from('{"topic":"t","data":"'), Buffer.from([0xe2, 0x82]), Buffer.from('"}')]), 400, /not valid UTF-8/], // truncated sequence
    [Buffer.from('{"topic":"t","data":"é"}', 'latin1'), 400, /not valid UTF-8/]
  ]
  for (const [body, status, message] of cases) {
    const res = await post(url, body)
    t.equal(res.status, status, `${String(body).slice(0, 50)}… (${body.length} bytes)`)
    if (status !== 202) t.match(res.message, message)
  }
  // A body over the limit without content-length (chunked) is cut off as well.
  const chunked = await fetch(`${url}/notify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: new ReadableStream({
      start (controller) {
        controller.enqueue(new TextEncoder().encode('{"topic":"t","data":"'))
        for (let i = 0; i < 100; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(1000)))
        controller.enqueue(new TextEncoder().encode('"}'))
        controller.close()
      }
    }),
    duplex: 'half'
  } as RequestInit)
  t.equal(chunked.status, 413, 'chunked body over the limit')
  await unaffected(t, instance)
})

t.test('CR, LF and NUL: refused where they would reach the wire or a Redis key, framed safely in data', async t => {
  const instance = await withObserver(t)
  const { url, observer } = instance
  for (const bad of ['a\r\nb', 'a\nb', 'a\rb', 'a\u0000b', 'a\u2028b', '\r\n', ' t', 't ']) {
    for (const [field, body] of [
      ['topic', { topic: bad, data: 1 }],
      ['topic[1]', { topic: ['t', bad], data: 1 }],
      ['event', { topic: 't', event: bad, data: 1 }]
    ] as const) {
      const res = await notify(url, body)
      // U+2028 escaped: raw, it would break the TAP output.
      t.equal(res.status, 400, `${JSON.stringify(bad).replace('\u2028', '\\u2028')} in ${field}`)
      t.match(res.body.message, new RegExp(`^body\\.${field.replace(/[[\]]/g, '\\$&')} must be 1-`))
    }
  }
  // In data a line break starts a new data: line; no field can be forged, no frame ended early.
  const forged = 'one\r\nid: 999\nevent: evil\r\rretry: 1\n\ndata: two\u0000three'
  t.equal((await notify(url, { topic: 't', data: forged })).status, 202)
  t.equal((await notify(url, { topic: 't', data: { 'k\r\ney': 'v\n\u0000' } })).status, 202)
  await observer.untilEvents(2)
  t.equal(observer.events[0].data, 'one\nid: 999\nevent: evil\n\nretry: 1\n\ndata: two\u0000three', 'the payload arrives whole, as data')
  t.equal(observer.events[0].event, undefined, 'no event name was forged')
  t.notSame(observer.events[0].id, '999', 'no id was forged')
  t.equal(observer.events[1].data, '{"k\\r\\ney":"v\\n\\u0000"}', 'JSON data is escaped')
  t.notMatch(observer.raw, /\r/, 'no CR ever reaches the wire')
  await unaffected(t, instance, [forged.replace(/\r\n|\r/g, '\n'), '{"k\\r\\ney":"v\\n\\u0000"}'])
})

t.test('topic names that try Redis key or channel tricks are refused on both endpoints', async t => {
  const instance = await withObserver(t, { MAX_TOPIC_LENGTH: 64 })
  const { url } = instance
  const tricks = ['*', 't*', '?', 't?', '[t]', '{t}', 'sse:{x}:t', 'a b', 't\\', '"t"', 't,u', '%', '\u00e9', '\u{1F600}', 'x'.repeat(65), 'x'.repeat(5000)]
  for (const topic of tricks) {
    const res = await notify(url, { topic, data: 1 })
    t.equal(res.status, 400, `publish to ${JSON.stringify(topic.slice(0, 20))}`)
    t.match(res.body.message, /^body\.topic must be 1-64 characters of A-Z a-z 0-9 _ \. : @ \/ -/)
    const stream = await fetch(`${url}/stream?topic=${encodeURIComponent(topic)}`)
    t.equal(stream.status, 400, `stream on ${JSON.stringify(topic.slice(0, 20))}`)
    t.match((await stream.json()).message, /is invalid: 1-64 characters/)
  }
  // Names that are only odd: valid, and delivered like any other, on Redis too.
  const odd = ['__proto__', 'constructor', 'x'.repeat(64), 'sse:t', '../../etc', 'a/b@c.d:e-f_g']
  const c = await openStream(t, `${url}/stream?${odd.map(o => `topic=${encodeURIComponent(o)}`).join('&')}`)
  t.equal(c.status, 200)
  const res = await notify(url, odd.map(topic => ({ topic, data: topic })))
  t.equal(res.status, 202)
  await c.untilEvents(odd.length)
  t.same(c.events.map(e => e.data), odd)
  c.close()
  await instance.observer.untilEvents(1)
  await new Promise(resolve => setTimeout(resolve, 200))
  await unaffected(t, { ...instance }, ['__proto__'])
})

t.test('GET /stream: thousands of query parameters, bad encodings, Last-Event-ID garbage', async t => {
  const instance = await withObserver(t, { MAX_TOPICS_PER_STREAM: 8, MAX_QUERY_PARAMS: 16 })
  const { url } = instance
  const cases: Array<[string, Record<string, string>, number, RegExp]> = [
    ['?' + Array.from({ length: 2000 }, () => 'topic=a').join('&'), {}, 400, /at most 8 topic parameters per stream, got 2000/],
    ['?topic=t&' + Array.from({ length: 2000 }, (_, i) => `p${i}=1`).join('&'), {}, 400, /at most 16 query parameters besides topic, got 2000/],
    ['?topic=t&' + Array.from({ length: 17 }, () => 'x=1').join('&'), {}, 400, /at most 16 query parameters besides topic, got 17/],
    ['?topic=t&__proto__=1&constructor=2&' + Array.from({ length: 15 }, (_, i) => `q${i}=1`).join('&'), {}, 400, /got 17/],
    ['?topic=%0D%0Aevil', {}, 400, /topic "\\r\\nevil" is invalid/],
    ['?topic=a%00b', {}, 400, /topic "a\\u0000b" is invalid/],
    ['?topic=%zz', {}, 400, /is invalid/],
    ['?topic=%E9', {}, 400, /is invalid/],
    ['?topic=t&lastEventId=garbage', {}, 400, /Last-Event-ID \(or lastEventId\) must be an id this service sent/],
    ['?topic=t&lastEventId=1-0%0Aid:%202', {}, 400, /Last-Event-ID/],
    ['?topic=t&lastEventId=-1-0', {}, 400, /Last-Event-ID/],
    ['?topic=t&lastEventId=9999999999999999-0', {}, 400, /Last-Event-ID/],
    ['?topic=t&lastEventId=1e3-0', {}, 400, /Last-Event-ID/],
    ['?topic=t', { 'last-event-id': 'x'.repeat(8000) }, 400, /Last-Event-ID/],
    ['?topic=t', { 'last-event-id': '1-0 ' + '9'.repeat(100) }, 400, /Last-Event-ID/],
    ['?topic=t', { 'last-event-id': '\u00ff\u00fe' }, 400, /Last-Event-ID/]
  ]
  for (const [query, headers, status, message] of cases) {
    const res = await fetch(`${url}/stream${query}`, { headers })
    t.equal(res.status, status, `${query.slice(0, 60)} ${JSON.stringify(headers).slice(0, 40)}`)
    t.match((await res.json()).message, message)
  }
  const huge = await fetch(`${url}/stream?topic=t&x=${'y'.repeat(20000)}`)
  t.equal(huge.status, 431, 'a URL past the header limit: 431')
  await huge.text()
  // What fetch will not send: CR/LF and NUL inside header values, two Last-Event-IDs.
  const nul = await raw(url, 'GET /stream?topic=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-0\u0000id: 2\r\nConnection: close\r\n\r\n')
  t.match(nul, /^HTTP\/1\.1 400/, 'NUL in a header: 400 from the HTTP parser')
  const cr = await raw(url, 'GET /stream?topic=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-0\rid: 2\r\nConnection: close\r\n\r\n')
  t.match(cr, /^HTTP\/1\.1 400/, 'a bare CR in a header: 400')
  const twice = await raw(url, 'GET /stream?topic=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-0\r\nLast-Event-ID: 2-0\r\nConnection: close\r\n\r\n')
  t.match(twice, /^HTTP\/1\.1 400[\s\S]*Last-Event-ID/, 'two Last-Event-ID headers: 400')
  const rawUrl = await raw(url, 'GET /stream?topic=a\rb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(rawUrl, /^HTTP\/1\.1 400/, 'a CR in the request line: 400')
  await unaffected(t, instance)
})
