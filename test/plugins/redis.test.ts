// The Redis connections: no REDIS_URL (single-instance mode), the URL forms managed services
// hand out (password, ACL user, TLS), the one line a misconfigured Redis gets (TLS on one
// side only, protected mode), and no password in the log.
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { notify, openStream, startInstance } from '../helpers/instance.js'
import { clusterSeeds, diagnoseRedis, hostPorts, redactUrl } from '../../plugins/redis.js'
import { startServer } from '../helpers/process.js'
import { freePort, TestRedis } from '../helpers/redis.js'

function logSink (level = 'info'): { lines: Array<{ level: number, msg: string }>, text: () => string, logger: { level: string, stream: Writable } } {
  const lines: Array<{ level: number, msg: string }> = []
  let text = ''
  const stream = new Writable({
    write (chunk, _enc, done) {
      text += String(chunk)
      for (const line of String(chunk).split('\n')) if (line !== '') lines.push(JSON.parse(line))
      done()
    }
  })
  return { lines, text: () => text, logger: { level, stream } }
}

async function fansOut (t: Test, url: string): Promise<void> {
  const prefix = `u${Math.random().toString(36).slice(2, 8)}:`
  const a = await startInstance(t, { REDIS_URL: url, REDIS_PREFIX: prefix })
  const b = await startInstance(t, { REDIS_URL: url, REDIS_PREFIX: prefix })
  t.match(await (await fetch(`${a.url}/health`)).json(), { status: 'ok', redis: { connected: true } })
  const c = await openStream(t, `${b.url}/stream?topic=u`)
  const res = await notify(a.url, { topic: 'u', data: 'across' })
  t.equal(res.body.fanout, 'cluster')
  await c.untilEvents(1)
}

t.test('no REDIS_URL: single-instance mode with the documented warning', async t => {
  const log = logSink()
  const a = await startInstance(t, {}, log.logger)
  t.ok(log.lines.some(l => l.level === 40 && l.msg === 'Redis not available - SSE will work in single-instance mode only'))
  t.match(await (await fetch(`${a.url}/health`)).json(), { status: 'ok', mode: 'single', redis: { configured: false, connected: false } })
})

t.test('redis://:password@host:port', async t => {
  const redis = await TestRedis.start(['--requirepass', 's3cret-pass'])
  t.teardown(() => redis.stop())
  await fansOut(t, `redis://:s3cret-pass@127.0.0.1:${redis.port}`)
})

t.test('redis://user:password@host:port (ACL user, as Redis Cloud hands out)', async t => {
  const redis = await TestRedis.start(['--user', 'default', 'off', '--user', 'app', 'on', '>app-pass', '~*', '&*', '+@all'])
  t.teardown(() => redis.stop())
  await fansOut(t, `redis://app:app-pass@127.0.0.1:${redis.port}`)
})

t.test('a wrong password: degraded, retrying, and the password never reaches the log', async t => {
  const redis = await TestRedis.start(['--requirepass', 'right-pass'])
  t.teardown(() => redis.stop())
  let log = ''
  const stream = new Writable({ write (chunk, _e, done) { log += String(chunk); done() } })
  const a = await startInstance(t, { REDIS_URL: `redis://:wrong-pass-value@127.0.0.1:${redis.port}`, REDIS_PREFIX: 'w:' }, { level: 'debug', stream })
  t.match(await (await fetch(`${a.url}/health`)).json(), { status: 'degraded' })
  t.notOk(log.includes('wrong-pass-value'), 'no password in the log')
  t.match(log, /Redis unreachable at start/)
})

/** A redis-server with a TLS port too (a test CA's certificate for localhost); the CA file for NODE_EXTRA_CA_CERTS. */
async function tlsRedis (t: Test, args: string[] = []): Promise<{ redis: TestRedis, tlsPort: number, ca: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sse-tls-'))
  const ssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }) }
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=test-ca', '-keyout', 'ca.key', '-out', 'ca.pem')
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr')
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'san.ext', '-out', 'server.pem')
  const tlsPort = await freePort()
  const redis = await TestRedis.start(['--tls-port', String(tlsPort), '--tls-cert-file', join(dir, 'server.pem'),
    '--tls-key-file', join(dir, 'server.key'), '--tls-ca-cert-file', join(dir, 'ca.pem'), '--tls-auth-clients', 'no', ...args])
  t.teardown(() => redis.stop())
  return { redis, tlsPort, ca: join(dir, 'ca.pem') }
}

t.test('rediss:// (TLS), as ElastiCache and Azure use, on the real server process', async t => {
  const { tlsPort, ca } = await tlsRedis(t, ['--requirepass', 'tls-pass'])
  const env = { REDIS_URL: `rediss://:tls-pass@localhost:${tlsPort}`, REDIS_PREFIX: 'tls:', NODE_EXTRA_CA_CERTS: ca }
  const a = await startServer(env)
  const b = await startServer(env)
  t.teardown(() => { a.child.kill('SIGKILL'); b.child.kill('SIGKILL') })
  t.match(await (await fetch(`${a.url}/health`)).json(), { status: 'ok', mode: 'cluster', redis: { connected: true } })
  const c = await openStream(t, `${b.url}/stream?topic=tls`)
  t.equal((await notify(a.url, { topic: 'tls', data: 'over tls' })).body.fanout, 'cluster')
  await c.untilEvents(1)
  t.equal(c.events[0].data, 'over tls')
  t.notOk(a.output().includes('tls-pass'), 'no password in the log')
})

/**
 * Starts an instance on `url` that cannot use its Redis; resolves with its warnings once
 * its publisher has retried twice (so a line per retry would show).
 */
async function refusedStart (t: Test, url: string): Promise<{ warnings: string[], health: any }> {
  const log = logSink()
  const { app, url: at } = await startInstance(t, { REDIS_URL: url, REDIS_PREFIX: 'refused:' }, log.logger)
  const pub = app.redis!.pub
  for (let i = 0; i < 2; i++) {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the publisher did not retry within 10 s')), 10_000)
      pub.once('reconnecting', () => { clearTimeout(timer); resolve() })
    })
  }
  const health = await (await fetch(`${at}/health`)).json()
  return { warnings: log.lines.filter(l => l.level >= 40).map(l => l.msg), health }
}

/** An address of this host other than loopback: protected mode refuses clients that come from one. */
function outsideAddress (): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  throw new Error('this host has no IPv4 address but loopback: protected mode cannot be tested here')
}

t.test('rediss:// to a Redis port without TLS: one line says the server speaks plain Redis', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const { warnings, health } = await refusedStart(t, `rediss://127.0.0.1:${redis.port}`)
  t.equal(health.status, 'degraded')
  t.equal(warnings.length, 1, `one line, not one per retry: ${JSON.stringify(warnings)}`)
  t.match(warnings[0], `Redis unreachable at start (REDIS_URL is rediss:// (TLS) but 127.0.0.1:${redis.port} speaks plain Redis, without TLS: use redis://, or the server's TLS port)`)
})

t.test('redis:// to a TLS port: one line says the server speaks TLS', async t => {
  const { tlsPort } = await tlsRedis(t)
  const { warnings } = await refusedStart(t, `redis://127.0.0.1:${tlsPort}`)
  t.equal(warnings.length, 1, JSON.stringify(warnings))
  t.match(warnings[0], `(REDIS_URL is redis:// but 127.0.0.1:${tlsPort} speaks TLS: use rediss://)`)
})

t.test('Redis in protected mode (no password, reached from another address than loopback): one line says so and what to do', async t => {
  const address = outsideAddress()
  const redis = await TestRedis.start(['--bind', '0.0.0.0', '--protected-mode', 'yes'])
  t.teardown(() => redis.stop())
  const { warnings, health } = await refusedStart(t, `redis://${address}:${redis.port}`)
  t.equal(health.status, 'degraded')
  t.equal(warnings.length, 1, JSON.stringify(warnings))
  t.match(warnings[0], `Redis at ${address}:${redis.port} is in protected mode and refuses this instance`)
  t.match(warnings[0], /Give Redis a password .* or set protected-mode no/)
  t.notMatch(warnings[0], /EPIPE/, 'not the broken pipe ioredis reports')
})

t.test('diagnoseRedis: nothing to say about an address where nothing listens, or a Redis that works', async t => {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  t.equal(await diagnoseRedis(`redis://127.0.0.1:${await freePort()}`, 500), null)
  t.equal(await diagnoseRedis(`rediss://127.0.0.1:${await freePort()}`, 500), null)
  t.equal(await diagnoseRedis(redis.url, 500), null)
})

t.test('a REDIS_URL password never reaches the log', async t => {
  const sink = logSink('trace')
  const password = 'redis-password-never-logged'
  const port = await freePort()
  const { app } = await startInstance(t, { REDIS_URL: `redis://user:${password}@127.0.0.1:${port}`, REDIS_CONNECT_TIMEOUT_MS: 200, LOG_LEVEL: 'trace' }, sink.logger)
  await new Promise(resolve => setTimeout(resolve, 500))
  await app.close()
  const log = sink.text()
  t.match(log, /127\.0\.0\.1/, 'the Redis address is logged')
  t.notOk(log.includes(password), 'its password is not')
})

t.test('redactUrl hides the password and keeps the rest', async t => {
  t.equal(redactUrl('redis://app:s3cret@cache.example:6380/2'), 'redis://app:***@cache.example:6380/2')
  t.equal(redactUrl('rediss://:p%40ss@cache.example:6379'), 'rediss://:***@cache.example:6379')
  t.equal(redactUrl('redis://cache.example:6379'), 'redis://cache.example:6379', 'nothing to hide')
  t.equal(redactUrl('redis://user@cache.example'), 'redis://user@cache.example', 'a user alone is not a secret')
  t.equal(redactUrl('not a url s3cret'), '(unparsable REDIS_URL)', 'what cannot be parsed is not logged at all')
})

t.test('hostPorts and clusterSeeds: REDIS_CLUSTER_NODES and REDIS_SENTINELS as nodes, a bad entry named', async t => {
  t.same(hostPorts('a:1, 10.0.0.2:6380,[::1]:7000', 'X'), [{ host: 'a', port: 1 }, { host: '10.0.0.2', port: 6380 }, { host: '::1', port: 7000 }])
  t.same(hostPorts('', 'X'), [])
  t.throws(() => hostPorts('a:1,b', 'REDIS_CLUSTER_NODES'), { message: 'REDIS_CLUSTER_NODES: "b" is not host:port' })
  t.throws(() => hostPorts(':6379', 'X'), { message: 'X: ":6379" is not host:port' })
  t.throws(() => hostPorts('a:70000', 'X'), /"a:70000" is not host:port/)
  t.throws(() => hostPorts('a:0', 'X'), /"a:0" is not host:port/)
  // The URL's own node first, the default port when it has none, then the extra seeds.
  t.same(clusterSeeds('rediss://user:pw@cfg.example.com', 'n2:7001'), [{ host: 'cfg.example.com', port: 6379 }, { host: 'n2', port: 7001 }])
  t.same(clusterSeeds('redis://10.0.0.1:7000', ''), [{ host: '10.0.0.1', port: 7000 }])
})
