// Streams and publishes through a real nginx run with deploy/nginx.conf, in front of two
// instances sharing one Redis: no buffering, fan-out, Last-Event-ID resume, failover.
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { findNginx, NGINX_CONF, renderNginxConf, startNginx } from '../../deploy/local-nginx.js'
import { notify, openStream, SseClient, startInstance, type Instance } from '../helpers/instance.js'
import { freePort, TestRedis } from '../helpers/redis.js'

const CONF = NGINX_CONF

async function clientsOf (node: Instance): Promise<number> {
  return (await (await fetch(`${node.url}/health`)).json()).clients
}

async function waitFor (check: () => boolean | Promise<boolean>, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/** The text of a `location` block of deploy/nginx.conf (its blocks hold no nested braces). */
function locationBlock (conf: string, match: string): string {
  const start = conf.indexOf(`location ${match} {`)
  if (start === -1) throw new Error(`deploy/nginx.conf has no "location ${match}" block`)
  return conf.slice(start, conf.indexOf('}', start))
}

const nginxBin = findNginx()
if (nginxBin === undefined) {
  t.fail('nginx is not installed (not on the PATH nor in /usr/sbin): apt-get install nginx. ' +
    'deploy/nginx.conf is tested through a real nginx; .ci/run installs it.')
} else {
  const redis = await TestRedis.start()
  t.teardown(() => redis.stop())
  const nodes = await Promise.all([0, 1].map(async () => await startInstance(t, { REDIS_URL: redis.url, HEARTBEAT_INTERVAL_MS: 300 })))

  const dir = await mkdtemp(join(tmpdir(), 'sse-proxy-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const port = await freePort()
  const proxy = `http://127.0.0.1:${port}`
  const conf = renderNginxConf(await readFile(CONF, 'utf8'), { upstreams: nodes.map(n => n.url.replace('http://', '')), port, dir })
  const nginx = await startNginx(nginxBin, dir, conf, proxy)
  // Registered last, so it runs first: nginx goes before the instances behind it.
  t.teardown(async () => {
    if (nginx.exitCode !== null || nginx.signalCode !== null) return
    nginx.kill('SIGTERM')
    await once(nginx, 'exit')
  })

  t.test('deploy/nginx.conf sets what SSE needs', async t => {
    // nginx passes small chunks on at once even when buffering, so this is read, not timed.
    const text = await readFile(CONF, 'utf8')
    const stream = locationBlock(text, '/stream')
    for (const line of ['proxy_buffering off;', 'proxy_cache off;', 'gzip off;']) t.ok(stream.includes(line), `/stream: ${line}`)
    const timeout = /proxy_read_timeout (\d+)h;/.exec(stream)
    t.ok(timeout !== null && Number(timeout[1]) >= 1, '/stream: proxy_read_timeout of an hour or more')
    t.ok(locationBlock(text, '= /notify').includes('proxy_pass'), 'a location for POST /notify')
    for (const line of ['proxy_http_version 1.1;', "proxy_set_header Connection '';",
      'proxy_set_header X-Forwarded-For $remote_addr;',
      'proxy_set_header Last-Event-ID $http_last_event_id;']) {
      t.ok(text.includes(line), line)
    }
    // A replica that is gone does not hold a stream open for nginx's default 60 s.
    const connect = /^ {8}proxy_connect_timeout (\d+)s;$/m.exec(text)
    t.ok(connect !== null && Number(connect[1]) <= 5, 'a connect timeout of a few seconds, for every location')
    t.match(stream, /proxy_next_upstream error timeout http_503;/, '/stream opens move on from a replica that is gone or closing')
    t.match(text, /include resolver\.conf;/, 'the resolver deploy/nginx-resolver.sh writes')
    // One proxy_set_header in a location would drop every server-level one there.
    for (const block of text.match(/location [^{]+\{[^}]*\}/g) ?? []) {
      t.notMatch(block, /proxy_set_header/, `${block.split('{')[0].trim()} keeps the server-level headers`)
    }
  })

  t.test('a stream opens through nginx at once: the retry line comes before any event', async t => {
    const c = await openStream(t, `${proxy}/stream?topic=open`)
    t.equal(c.status, 200)
    t.match(c.headers['content-type'], /^text\/event-stream/)
    t.equal(c.headers['cache-control'], 'no-cache')
    t.notOk(c.headers['content-length'], 'no content-length: the body is streamed')
    await c.until(x => x.raw.includes('\n\n'), 1000, 'the first bytes through nginx')
    t.ok(c.raw.startsWith('retry: '), 'retry line first')
    t.equal(c.events.length, 0, 'nothing was published')
    const before = c.comments.length
    await c.until(x => x.comments.length >= before + 2, 2000, 'two heartbeats through nginx')
    t.ok(c.comments.includes('heartbeat'), 'heartbeat comments are not held back')
  })

  t.test('POST /notify through nginx reaches streams on both instances promptly, once each', async t => {
    const clients: SseClient[] = []
    for (let i = 0; i < 4; i++) clients.push(await openStream(t, `${proxy}/stream?topic=orders`))
    await Promise.all(clients.map(c => c.until(x => x.raw.includes('\n\n'), 1000, 'first bytes')))
    for (const n of nodes) t.ok(await clientsOf(n) >= 2, `round robin: ${n.url} holds streams`)

    const sent = Date.now()
    const res = await notify(proxy, { topic: 'orders', event: 'created', data: { id: 42 } })
    t.equal(res.status, 202)
    t.equal(res.body.fanout, 'cluster')
    await Promise.all(clients.map(c => c.untilEvents(1, 1000)))
    t.ok(Date.now() - sent < 1000, `delivered through nginx in ${Date.now() - sent} ms`)
    await new Promise(resolve => setTimeout(resolve, 200))
    for (const c of clients) t.same(c.events, [{ id: res.body.id, event: 'created', data: '{"id":42}' }])
  })

  t.test('Last-Event-ID (header or query) resumes through nginx on either instance', async t => {
    const live = await openStream(t, `${proxy}/stream?topic=resume`)
    const ids: string[] = []
    for (let i = 1; i <= 4; i++) ids.push((await notify(proxy, { topic: 'resume', data: `e${i}` })).body.id)
    await live.untilEvents(4)
    live.close()

    const counts = async (): Promise<number[]> => Promise.all(nodes.map(clientsOf))
    await waitFor(async () => (await counts()).every(n => n === 0), 'earlier streams to close')

    // Two opens in a row: round robin lands them on different instances.
    const resumed: SseClient[] = []
    resumed.push(await openStream(t, `${proxy}/stream?topic=resume`, { 'last-event-id': ids[0] }))
    resumed.push(await openStream(t, `${proxy}/stream?topic=resume`, { 'last-event-id': ids[0] }))
    t.same(await counts(), [1, 1], 'the two resumes are on different instances')
    resumed.push(await openStream(t, `${proxy}/stream?topic=resume&lastEventId=${encodeURIComponent(ids[1])}`))
    for (const c of resumed) t.equal(c.status, 200)
    const e5 = (await notify(proxy, { topic: 'resume', data: 'e5' })).body.id
    await resumed[0].untilEvents(4)
    await resumed[1].untilEvents(4)
    await resumed[2].untilEvents(3)
    const all = [...ids, e5].map((id, i) => ({ id, data: `e${i + 1}` }))
    t.same(resumed[0].events, all.slice(1), 'missed events replayed in order, then the live one (header)')
    t.same(resumed[1].events, all.slice(1), 'the same on the other instance')
    t.same(resumed[2].events, all.slice(2), 'lastEventId query parameter')
  })

  t.test('a stream whose instance shuts down resumes through nginx on the other one', async t => {
    const clients: SseClient[] = []
    for (let i = 0; i < 2; i++) clients.push(await openStream(t, `${proxy}/stream?topic=failover`))
    const first = (await notify(proxy, { topic: 'failover', data: 'before' })).body.id
    await Promise.all(clients.map(c => c.untilEvents(1)))

    const [gone, staying] = nodes
    const before = await clientsOf(gone)
    t.ok(before >= 1, 'one of the streams is on the instance that goes')
    await gone.app.close()
    await waitFor(() => clients.filter(c => c.ended).length === before, 'its streams to end')
    t.equal(clients.filter(c => c.ended).length, before, 'its streams were ended cleanly')

    // Published while the client is away, through nginx (its POST goes to the live one).
    const missed = await notify(proxy, { topic: 'failover', data: 'missed' })
    t.equal(missed.status, 202)
    const back = await openStream(t, `${proxy}/stream?topic=failover`, { 'last-event-id': first })
    t.equal(back.status, 200, 'nginx skipped the instance that is gone')
    await back.untilEvents(1)
    t.same(back.events, [{ id: missed.body.id, data: 'missed' }], 'the missed event, replayed once')
    t.ok(await clientsOf(staying) >= 2)
  })

  t.test('X-Forwarded-For is the address nginx saw: a client cannot forge its own, so a rate limit counts it (TRUST_PROXY)', async t => {
    const limited = await startInstance(t, { TRUST_PROXY: 'loopback', RATE_LIMIT_PUBLISH: 1 })
    const limitedDir = await mkdtemp(join(tmpdir(), 'sse-proxy-xff-'))
    t.teardown(() => rm(limitedDir, { recursive: true, force: true }))
    const limitedPort = await freePort()
    const front = `http://127.0.0.1:${limitedPort}`
    const limitedConf = renderNginxConf(await readFile(CONF, 'utf8'), { upstreams: [limited.url.replace('http://', '')], port: limitedPort, dir: limitedDir })
    const child = await startNginx(nginxBin, limitedDir, limitedConf, front)
    t.teardown(async () => {
      child.kill('SIGTERM')
      await once(child, 'exit')
    })
    t.equal((await notify(front, { data: 1 }, { 'x-forwarded-for': '203.0.113.1' })).status, 202)
    const second = await notify(front, { data: 2 }, { 'x-forwarded-for': '203.0.113.2' })
    t.equal(second.status, 429, 'another forged address is still the same client')
    t.equal((await notify(limited.url, { data: 3 }, { 'x-forwarded-for': '203.0.113.3' })).status, 202,
      'straight to the instance, from a trusted address, the header does count: nginx is what makes it safe')
  })

  t.test('no instance reachable: /stream is a 200 stream that ends with retry:, so EventSource retries; /notify stays a 502', async t => {
    const downDir = await mkdtemp(join(tmpdir(), 'sse-proxy-down-'))
    t.teardown(() => rm(downDir, { recursive: true, force: true }))
    const downPort = await freePort()
    const down = `http://127.0.0.1:${downPort}`
    const downConf = renderNginxConf(await readFile(CONF, 'utf8'), { upstreams: [`127.0.0.1:${await freePort()}`], port: downPort, dir: downDir })
    const child = await startNginx(nginxBin, downDir, downConf, down, false)
    t.teardown(async () => {
      child.kill('SIGTERM')
      await once(child, 'exit')
    })
    const c = await openStream(t, `${down}/stream?topic=a`, { origin: 'https://app.example.com' })
    t.equal(c.status, 200)
    t.match(c.headers['content-type'], /^text\/event-stream/)
    t.equal(c.headers['access-control-allow-origin'], 'https://app.example.com', 'readable by a page on another origin')
    t.equal(c.headers['access-control-allow-credentials'], 'true')
    await c.until(x => x.ended, 2000, 'the stream to end')
    t.match(c.raw, /^retry: \d+\n/, 'a retry delay first')
    t.same(c.events.map(e => e.event), ['refused'], 'one refused event, and no id: Last-Event-ID is kept')
    t.equal(c.events[0].id, undefined)
    const res = await notify(down, { topic: 'a', data: 1 })
    t.equal(res.status, 502, 'a publisher sees that nothing was accepted')
  })
}
