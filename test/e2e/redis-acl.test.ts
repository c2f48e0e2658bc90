// Health tells the truth: a Redis user that may not subscribe, run scripts or publish
// leaves the instance degraded with the reason, its publishes answered "local", and
// nothing a refused publish carried in history.
import t from 'tap'
import { Redis } from 'ioredis'
import { notify, openStream, startInstance } from '../helpers/instance.js'
import { TestRedis } from '../helpers/redis.js'

/** A Redis whose only user `app` has every right but those taken away. */
async function redisWithout (t: Parameters<typeof startInstance>[0], ...denied: string[]): Promise<{ redis: TestRedis, url: string }> {
  const redis = await TestRedis.start(['--user', 'default', 'on', 'nopass', '~*', '&*', '+@all', '--user', 'app', 'on', '>app-pass', '~*', '&*', '+@all', ...denied])
  t.teardown(() => redis.stop())
  return { redis, url: `redis://app:app-pass@127.0.0.1:${redis.port}` }
}

async function health (url: string): Promise<any> {
  return await (await fetch(`${url}/health`)).json()
}

function logSink (): { lines: any[], logger: any } {
  const lines: any[] = []
  return { lines, logger: { level: 'info', stream: { write: (line: string) => lines.push(JSON.parse(line)) } } }
}

t.test('a user that may not subscribe (no SSUBSCRIBE): degraded with the reason, publishes answered "local", local clients still served', async t => {
  const { url } = await redisWithout(t, '-ssubscribe')
  const log = logSink()
  const a = await startInstance(t, { REDIS_URL: url }, log.logger)
  const h = await health(a.url)
  t.match(h, { status: 'degraded', redis: { configured: true, connected: true } })
  t.match(h.reason, /SSUBSCRIBE/, `the reason names what is refused: ${h.reason}`)
  t.ok(log.lines.some(l => l.level >= 50 && /SSUBSCRIBE/.test(l.reason ?? '')), 'one log line names it')
  const c = await openStream(t, `${a.url}/stream?topic=x`)
  const res = await notify(a.url, { topic: 'x', data: 'hello' })
  t.equal(res.status, 202)
  t.equal(res.body.fanout, 'local', 'never "cluster" while this instance\'s subscription is down')
  await c.untilEvents(1)
  t.same(c.events.map(e => e.data), ['hello'])
})

t.test('a user that may not run scripts: degraded with the reason', async t => {
  const { url } = await redisWithout(t, '-eval', '-evalsha')
  const a = await startInstance(t, { REDIS_URL: url })
  const h = await health(a.url)
  t.equal(h.status, 'degraded')
  t.match(h.reason, /publish script/, h.reason)
  const res = await notify(a.url, { topic: 'x', data: 1 })
  t.equal(res.body.fanout, 'local')
})

t.test('a user that may not publish (no SPUBLISH): the script takes its appends back, so nothing refused is ever replayed', async t => {
  const { redis, url } = await redisWithout(t, '-spublish')
  const a = await startInstance(t, { REDIS_URL: url, REDIS_PREFIX: 'acl:' })
  const h = await health(a.url)
  t.equal(h.status, 'degraded')
  t.match(h.reason, /SPUBLISH|publish script/, h.reason)
  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  // Publishing goes local: the outbox keeps it for when the path is back.
  const res = await notify(a.url, { topic: 'x', data: 1 })
  t.equal(res.body.fanout, 'local')
  t.equal(await admin.exists('acl:{x}'), 0, 'no history entry for an event Redis would not publish')
  t.equal(await admin.xlen('acl:{*probe:' + (await health(a.url)).instanceId + '}'), 0, 'the refused probe left nothing either')
})

t.test('a wrong password: the start says why in one line', async t => {
  const { redis } = await redisWithout(t)
  const log = logSink()
  const a = await startInstance(t, { REDIS_URL: `redis://app:wrong@127.0.0.1:${redis.port}` }, log.logger)
  t.equal((await health(a.url)).status, 'degraded')
  const text = log.lines.map(l => JSON.stringify(l)).join('\n')
  t.match(text, /WRONGPASS|invalid username-password/, 'the log names the refusal')
})
