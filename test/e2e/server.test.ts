// The entry point as a process: signals, exit codes, configuration errors, a killed instance.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { notify, openStream, SseClient } from '../helpers/instance.js'
import { startServer } from '../helpers/process.js'
import { freePort, TestRedis } from '../helpers/redis.js'

t.test('SIGTERM with open streams: streams end cleanly, exit 0 well within SHUTDOWN_TIMEOUT_MS', async t => {
  const server = await startServer({ SHUTDOWN_TIMEOUT_MS: '5000' })
  const clients = await Promise.all([1, 2, 3].map(() => SseClient.open(`${server.url}/stream?topic=a`)))
  const started = Date.now()
  server.child.kill('SIGTERM')
  const { code } = await server.exited
  t.equal(code, 0, 'exit code 0')
  t.ok(Date.now() - started < 5000, `exited in ${Date.now() - started} ms`)
  for (const c of clients) await c.until(x => x.ended, 2000, 'stream end')
  t.ok(clients.every(c => c.ended))
  t.match(server.output(), /SIGTERM received/)
})

t.test('SIGINT also shuts down with exit 0', async t => {
  const server = await startServer()
  server.child.kill('SIGINT')
  t.equal((await server.exited).code, 0)
})

t.test('a bad setting stops the start with one line naming the variable', async t => {
  for (const [name, value] of [['PORT', 'abc'], ['HISTORY_SIZE', '0'], ['REDIS_URL', 'http://x'], ['PUBLISH_WHEN_DEGRADED', 'maybe']]) {
    const server = await startServer({ [name]: value }, false)
    const { code } = await server.exited
    t.equal(code, 1, `${name}=${value} exits 1`)
    const lines = server.output().trim().split('\n')
    t.equal(lines.length, 1, 'one line')
    t.match(lines[0], new RegExp(`cannot start: .*${name}`), `the line names ${name}`)
  }
})

t.test('settings come from a .env file in the working directory; the environment wins', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sse-env-'))
  const port = await freePort()
  writeFileSync(join(dir, '.env'), `PORT=${port}\nHEARTBEAT_INTERVAL_MS=150\nHEARTBEAT_EVENT=from-dotenv\nRETRY_MS=9999\n`)
  const server = await startServer({ RETRY_MS: '1111' }, true, dir, port)
  t.teardown(() => { server.child.kill('SIGKILL') })
  const c = await openStream(t, `${server.url}/stream`)
  await c.until(x => x.events.some(e => e.event === 'from-dotenv'), 3000, 'a heartbeat named in .env')
  t.ok(c.raw.startsWith('retry: 1111\n'), 'the environment wins over .env')
})

t.test('no REDIS_URL: the single-instance warning, and it works', async t => {
  const server = await startServer()
  t.teardown(() => { server.child.kill('SIGKILL') })
  t.match(server.output(), /Redis not available - SSE will work in single-instance mode only/)
  const c = await openStream(t, `${server.url}/stream?topic=x`)
  t.equal((await notify(server.url, { topic: 'x', data: 1 })).status, 202)
  await c.untilEvents(1)
})

t.test('an instance killed with SIGKILL: its clients resume on another instance, nothing lost', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: 'kill:', LOG_LEVEL: 'warn' }
  const doomed = await startServer({ ...env, LOG_LEVEL: 'info' })
  const survivor = await startServer({ ...env, LOG_LEVEL: 'info' })
  t.teardown(() => { doomed.child.kill('SIGKILL'); survivor.child.kill('SIGKILL') })
  const clients = await Promise.all([1, 2, 3].map(() => SseClient.open(`${doomed.url}/stream?topic=k`)))
  const published: number[] = []
  for (let i = 0; i < 10; i++) { await notify(survivor.url, { topic: 'k', data: i }); published.push(i) }
  for (const c of clients) await c.untilEvents(10)
  doomed.child.kill('SIGKILL')
  for (const c of clients) await c.until(x => x.ended, 3000, 'stream cut')
  // Published while the clients are away.
  for (let i = 10; i < 30; i++) { await notify(survivor.url, { topic: 'k', data: i }); published.push(i) }
  const resumed = await Promise.all(clients.map(async c => await openStream(t, `${survivor.url}/stream?topic=k`, { 'last-event-id': c.lastEventId! })))
  for (let i = 30; i < 35; i++) { await notify(survivor.url, { topic: 'k', data: i }); published.push(i) }
  for (const [i, c] of clients.entries()) {
    await resumed[i].untilEvents(25)
    await new Promise(resolve => setTimeout(resolve, 100))
    const all = [...c.events, ...resumed[i].events].map(e => Number(e.data))
    t.same(all, published, `client ${i}: every event once, in order, across the kill`)
  }
})
