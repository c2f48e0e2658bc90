// Limits that protect the instance: rate limits per address (shared through Redis), load
// shedding that leaves open streams alone, and timeouts that end slow-loris clients.
import t from 'tap'
import { connect, type Socket } from 'node:net'
import { notify, openStream, startInstance } from '../helpers/instance.js'
import { TestRedis } from '../helpers/redis.js'
import { startCluster } from '../helpers/redis-cluster.js'

const redis = await TestRedis.start()
t.teardown(() => redis.stop())

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

t.test('publishes per address over RATE_LIMIT_PUBLISH get 429 with Retry-After and publish nothing', async t => {
  const { url } = await startInstance(t, { RATE_LIMIT_PUBLISH: 3 })
  const observer = await openStream(t, `${url}/stream?topic=t`)
  for (let i = 0; i < 3; i++) t.equal((await notify(url, { topic: 't', data: i })).status, 202)
  const over = await notify(url, { topic: 't', data: 'over' })
  t.equal(over.status, 429)
  t.match(over.body.message, /at most 3 publishes per 60 s from one address; retry in/)
  t.ok(Number(over.headers.get('retry-after')) > 0, 'Retry-After')
  await observer.untilEvents(3)
  await sleep(100)
  t.same(observer.events.map(e => e.data), ['0', '1', '2'])
  t.equal((await fetch(`${url}/health`)).status, 200, '/health is not limited')
})

t.test('new streams per address over RATE_LIMIT_STREAMS get 429; the open ones go on', async t => {
  const { app, url } = await startInstance(t, { RATE_LIMIT_STREAMS: 2 })
  const a = await openStream(t, `${url}/stream?topic=t`)
  const b = await openStream(t, `${url}/stream?topic=t`)
  const c = await fetch(`${url}/stream?topic=t`)
  t.equal(c.status, 429)
  t.match((await c.json()).message, /at most 2 new streams per 60 s/)
  t.equal((await notify(url, { topic: 't', data: 'x' })).status, 202, 'publishing has its own limit')
  await a.untilEvents(1)
  await b.untilEvents(1)
  t.equal(app.hub.size, 2)
})

t.test('with Redis the limit counts across instances, and a Redis outage does not turn it into errors', async t => {
  const prefix = `rl${Math.random().toString(36).slice(2, 8)}:`
  const config = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, RATE_LIMIT_PUBLISH: 3 }
  const [a, b] = await Promise.all([startInstance(t, config), startInstance(t, config)])
  t.equal((await notify(a.url, { data: 1 })).status, 202)
  t.equal((await notify(b.url, { data: 2 })).status, 202)
  t.equal((await notify(a.url, { data: 3 })).status, 202)
  const over = await notify(b.url, { data: 4 })
  t.equal(over.status, 429, 'the fourth publish, on the other instance, is over the shared limit')

  const { url: soloUrl } = await startInstance(t, { REDIS_URL: `redis://127.0.0.1:${await unusedPort()}`, RATE_LIMIT_PUBLISH: 1, REDIS_CONNECT_TIMEOUT_MS: 100 })
  for (let i = 0; i < 3; i++) {
    const res = await notify(soloUrl, { data: i })
    t.equal(res.status, 202, 'Redis unreachable: publishes pass the limit rather than fail')
  }
})

t.test('on a Redis Cluster the limits count across instances: one key per address, one slot per script', async t => {
  const cluster = await startCluster(t, { replicas: 0 })
  const prefix = `rc${Math.random().toString(36).slice(2, 8)}:`
  const config = { REDIS_URL: cluster.url, REDIS_PREFIX: prefix, RATE_LIMIT_PUBLISH: 3, RATE_LIMIT_STREAMS: 2, REDIS_CONNECT_TIMEOUT_MS: 3000 }
  const [a, b] = await Promise.all([startInstance(t, config), startInstance(t, config)])
  t.equal(a.app.redis?.mode, 'cluster')
  for (const [i, n] of [a, b, a].entries()) t.equal((await notify(n.url, { data: i })).status, 202)
  t.equal((await notify(b.url, { data: 4 })).status, 429, 'the fourth publish, on the other instance, is over the shared limit')
  await openStream(t, `${a.url}/stream`)
  await openStream(t, `${b.url}/stream`)
  const third = await fetch(`${a.url}/stream`)
  t.equal(third.status, 429, 'the third new stream, on the first instance again, is over the shared limit')
  await third.body?.cancel()
  // The counters are cluster keys (the limits went through the cluster, not a local store).
  const keys: string[] = []
  for (const port of cluster.nodes.filter(n => n.role === 'master').map(n => n.port)) {
    keys.push(...await cluster.command(port, 'KEYS', `${prefix}rate:*`) as string[])
  }
  t.equal(keys.length, 2, `one counter per limit and address: ${keys.join(', ')}`)
})

t.test('under pressure new streams and publishes get 503; open streams, /health and /metrics go on', async t => {
  const prefix = `up${Math.random().toString(36).slice(2, 8)}:`
  // Heap above 1 byte is always "pressure" once measured; the stream opens before the first sample.
  const pressed = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix, PRESSURE_MAX_HEAP_USED_BYTES: 1, PRESSURE_SAMPLE_INTERVAL_MS: 2000, HEARTBEAT_INTERVAL_MS: 200 })
  const calm = await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })
  const open = await openStream(t, `${pressed.url}/stream?topic=t`)
  t.equal(open.status, 200)
  const deadline = Date.now() + 4000
  while (!pressed.app.isUnderPressure() && Date.now() < deadline) await sleep(50)
  t.ok(pressed.app.isUnderPressure(), 'the instance measured its pressure')

  const refused = await fetch(`${pressed.url}/stream?topic=t`)
  t.equal(refused.status, 503)
  t.ok(Number(refused.headers.get('retry-after')) >= 1, 'Retry-After')
  t.match((await refused.json()).message, /under pressure \(heapUsedBytes \d+\): open streams go on/)
  const publish = await notify(pressed.url, { topic: 't', data: 'refused' })
  t.equal(publish.status, 503)
  t.equal((await fetch(`${pressed.url}/health`)).status, 200, '/health is never shed')
  t.equal((await fetch(`${pressed.url}/metrics`)).status, 200, '/metrics is never shed')

  t.equal((await notify(calm.url, { topic: 't', data: 'through' })).status, 202)
  await open.untilEvents(1)
  t.same(open.events.map(e => e.data), ['through'], 'the open stream still gets events from the cluster')
  const beats = open.comments.length
  await sleep(500)
  t.ok(open.comments.length > beats, 'and heartbeats')
  t.notOk(open.ended)
  t.equal(pressed.app.hub.size, 1)
})

async function unusedPort (): Promise<number> {
  const { freePort } = await import('../helpers/redis.js')
  return freePort()
}

interface Loris { socket: Socket, closedAt: number | null, received: string }

/** A client that sends `head` and then one more byte every `everyMs`, never finishing. */
async function loris (url: string, head: string, drip: string, everyMs: number): Promise<Loris> {
  const { port } = new URL(url)
  const socket = connect(Number(port), '127.0.0.1')
  await new Promise<void>(resolve => socket.once('connect', resolve))
  const l: Loris = { socket, closedAt: null, received: '' }
  socket.write(head)
  let i = 0
  const timer = setInterval(() => { if (!socket.destroyed) socket.write(drip[i++ % drip.length]) }, everyMs)
  socket.on('data', chunk => { l.received += chunk.toString() })
  socket.on('error', () => {})
  socket.on('close', () => { clearInterval(timer); l.closedAt = Date.now() })
  return l
}

t.test('slow-loris clients are cut at HEADERS_TIMEOUT_MS / REQUEST_TIMEOUT_MS; streams are not', async t => {
  const { app, url } = await startInstance(t, { HEADERS_TIMEOUT_MS: 1000, REQUEST_TIMEOUT_MS: 2000, HEARTBEAT_INTERVAL_MS: 300 })
  const observer = await openStream(t, `${url}/stream?topic=t`)
  const start = Date.now()
  const heads = await Promise.all(Array.from({ length: 20 }, async () =>
    loris(url, 'GET /stream?topic=t HTTP/1.1\r\nHost: x\r\nX-Slow: ', 'abcdefgh', 100)))
  const body = await loris(url, 'POST /notify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{"topic":"t","data":"', 'zzzz', 200)
  const all = [...heads, body]
  t.teardown(() => all.forEach(l => l.socket.destroy()))
  const connections = async (): Promise<number> => await new Promise(resolve => app.server.getConnections((_err, n) => resolve(n)))
  while (await connections() < 22 && Date.now() - start < 1000) await sleep(10)
  t.equal(await connections(), 22, 'all connected')

  while (all.some(l => l.closedAt === null) && Date.now() - start < 6000) await sleep(100)
  for (const l of heads) {
    t.ok(l.closedAt !== null && l.closedAt - start <= 1000 + 1000 + 1000, `header dribbler cut after ${(l.closedAt ?? NaN) - start} ms`)
  }
  t.match(heads[0].received, /^HTTP\/1\.1 408/, 'answered 408 Request Timeout')
  t.ok(body.closedAt !== null && body.closedAt - start <= 2000 + 1000 + 1000, `body dribbler cut after ${(body.closedAt ?? NaN) - start} ms`)
  t.equal(await connections(), 1, 'only the real stream is left')
  t.equal(app.hub.size, 1, 'no dribbler got a stream')
  t.notOk(observer.ended, 'the stream, open longer than REQUEST_TIMEOUT_MS, goes on')
  t.equal((await notify(url, { topic: 't', data: 'still here' })).status, 202)
  await observer.untilEvents(1)
  t.same(observer.events.map(e => e.data), ['still here'], 'the half-sent publish published nothing')
})

t.test('connections that never send a byte are closed at HEADERS_TIMEOUT_MS and do not hold up close()', async t => {
  const { app, url } = await startInstance(t, { HEADERS_TIMEOUT_MS: 1000, REQUEST_TIMEOUT_MS: 2000 })
  const { port } = new URL(url)
  const start = Date.now()
  const silent = await Promise.all(Array.from({ length: 10 }, async () => {
    const socket = connect(Number(port), '127.0.0.1')
    socket.on('error', () => {})
    socket.resume()
    await new Promise<void>(resolve => socket.once('connect', resolve))
    return socket
  }))
  t.teardown(() => silent.forEach(s => s.destroy()))
  const closed = await Promise.all(silent.map(async s => await new Promise<number>(resolve => s.once('close', () => resolve(Date.now() - start)))))
  for (const ms of closed) t.ok(ms >= 900 && ms <= 3000, `closed after ${ms} ms`)
  const c = await openStream(t, `${url}/stream?topic=t`)
  t.equal(c.status, 200, 'a stream that opens right away is not affected')
  await sleep(1500)
  t.notOk(c.ended)

  const { app: other, url: otherUrl } = await startInstance(t)
  const idle = connect(Number(new URL(otherUrl).port), '127.0.0.1')
  idle.on('error', () => {})
  await new Promise<void>(resolve => idle.once('connect', resolve))
  // And one kept alive after a request, now dribbling its next request head.
  const kept = connect(Number(new URL(otherUrl).port), '127.0.0.1')
  kept.on('error', () => {})
  let answer = ''
  kept.on('data', chunk => { answer += chunk.toString() })
  kept.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
  while (!answer.includes('"status"')) await sleep(10)
  kept.write('GET /health HTTP/1.1\r\nHo')
  await sleep(50)
  const closing = Date.now()
  await other.close()
  t.ok(Date.now() - closing < 1000, `close() with a silent and a half-sent connection open took ${Date.now() - closing} ms`)
  idle.destroy()
  kept.destroy()
  await app.close()
})
