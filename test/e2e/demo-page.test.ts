// The demo page in a real Chromium: what a user sees when events cross instances, when
// instances die behind nginx, and when the page is opened from a link or reloaded.
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { findNginx, NGINX_CONF, renderNginxConf, startNginx } from '../../deploy/local-nginx.js'
import { eventRows, launchChromium } from '../helpers/chromium.js'
import { notify, openStream, startInstance } from '../helpers/instance.js'
import { startServer, type ServerProcess } from '../helpers/process.js'
import { freePort, TestRedis } from '../helpers/redis.js'

const redis = await TestRedis.start()
t.teardown(() => redis.stop())
const browser = await launchChromium(t)

async function text (page: Page, selector: string): Promise<string> {
  return (await page.textContent(selector)) ?? ''
}

/** Waits until the page's table shows `n` rows (of `event` only, when given). */
async function untilRows (page: Page, n: number, event?: string, ms = 5000): Promise<void> {
  await page.waitForFunction(([n, event]) =>
    [...document.querySelectorAll('#events tr')].filter(row => event === undefined || row.children[1]?.textContent === event).length >= (n as number),
  [n, event] as const, { timeout: ms })
}

async function untilState (page: Page, state: string, ms = 5000): Promise<void> {
  await page.waitForFunction(state => document.getElementById('state')?.dataset.state === state, state, { timeout: ms })
}

// Registered by each test: an assertion in afterEach would come after the test's end.
function checkPolicy (t: Test): void {
  t.teardown(() => {
    const refused = browser.errors.filter(e => /Content Security Policy/i.test(e))
    if (refused.length > 0) throw new Error(`the page broke its Content-Security-Policy: ${refused.join('; ')}`)
  })
}

t.test('(a) two instances on one Redis: the page on A shows what is published on B, and what its own form publishes on A', async t => {
  checkPolicy(t)
  const prefix = `demo${Math.random().toString(36).slice(2, 8)}:`
  const [a, b] = await Promise.all([0, 1].map(async () => await startInstance(t, { REDIS_URL: redis.url, REDIS_PREFIX: prefix })))
  const onB = await openStream(t, `${b.url}/stream?topic=orders`)
  const page = await browser.newPage()
  t.teardown(() => page.close())
  await page.goto(`${a.url}/demo?topic=orders&event=created`)
  await untilState(page, 'open')

  const fromB = await notify(b.url, { topic: 'orders', event: 'created', data: { id: 42 } })
  t.equal(fromB.body.fanout, 'cluster')
  await untilRows(page, 1)
  t.same(await eventRows(page), [{ id: fromB.body.id, event: 'created', data: '{"id":42}' }], 'published on B, shown on A')

  await page.fill('#pub-topic', 'orders')
  await page.fill('#pub-event', 'shipped')
  await page.fill('#pub-data', '{"id":43}')
  await page.click('#publish button')
  await page.waitForFunction(() => /^202: id \S+ \(fanout cluster\)$/.test(document.getElementById('pub-result')?.textContent ?? ''))
  await untilRows(page, 2)
  const rows = await eventRows(page)
  t.match(rows[1], { event: 'shipped', data: '{"id":43}' }, 'a name published from the form is shown too')
  t.equal(await text(page, '#pub-result'), `202: id ${rows[1].id} (fanout cluster)`)
  await onB.untilEvents(2)
  t.same(onB.events.map(e => e.id), [fromB.body.id, rows[1].id], 'the form\'s event reached B\'s clients, once')
  t.equal(await text(page, '#last-id'), rows[1].id)
  t.equal(await text(page, '#reconnects'), '0')
})

t.test('(c) the page reads its topics from its URL, and writes them back', async t => {
  checkPolicy(t)
  const { url } = await startInstance(t)
  const page = await browser.newPage()
  t.teardown(() => page.close())
  await page.goto(`${url}/?topic=a&topic=b`)
  await untilState(page, 'open')
  t.equal(await page.inputValue('#topics'), 'a, b')
  await notify(url, { topic: 'c', data: 'not for this page' })
  const a = await notify(url, { topic: 'a', data: 'to a' })
  const b = await notify(url, { topic: 'b', data: 'to b' })
  await notify(url, { data: 'to everyone' })
  await untilRows(page, 3)
  const rows = await eventRows(page)
  t.same(rows.map(r => r.data).sort(), ['to a', 'to b', 'to everyone'], 'its topics and the broadcasts, not topic c')
  t.ok(rows.every(r => r.event === 'message'))
  t.ok(a.body.id !== b.body.id)

  await page.fill('#topics', 'b')
  await page.click('#watch button')
  await untilState(page, 'open')
  t.equal(new URL(page.url()).search, '?topic=b', 'a link to this view')
  await notify(url, { topic: 'a', data: 'a again' })
  await notify(url, { topic: 'b', data: 'b again' })
  await untilRows(page, 4)
  t.same((await eventRows(page)).slice(3).map(r => r.data), ['b again'])
})

t.test('the page resumes where it left off after a reload (last id kept per topic set)', async t => {
  checkPolicy(t)
  const { url } = await startInstance(t)
  const first = await browser.newPage()
  await first.goto(`${url}/?topic=r`)
  await untilState(first, 'open')
  for (const data of ['r1', 'r2']) await notify(url, { topic: 'r', data })
  await untilRows(first, 2)
  await first.close()
  const missed = []
  for (const data of ['r3', 'r4']) missed.push((await notify(url, { topic: 'r', data })).body.id)

  const page = await browser.newPage()
  t.teardown(() => page.close())
  await page.goto(`${url}/?topic=r`)
  await untilRows(page, 2)
  t.same(await eventRows(page), [{ id: missed[0], event: 'message', data: 'r3' }, { id: missed[1], event: 'message', data: 'r4' }],
    'what was missed, once, and nothing from before')
  t.equal(await text(page, '#last-id'), missed[1])

  await page.click('#forget')
  await untilState(page, 'open')
  t.equal(await text(page, '#last-id'), 'none')
})

const nginxBin = findNginx()
t.test('(b) behind nginx: the page recovers by itself when its instance, then both, are SIGKILLed', async t => {
  checkPolicy(t)
  if (nginxBin === undefined) throw new Error('nginx is not installed (not on the PATH nor in /usr/sbin): apt-get install nginx')
  const dir = await mkdtemp(join(tmpdir(), 'sse-demo-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ports = [await freePort(), await freePort()]
  const env = { REDIS_URL: redis.url, REDIS_PREFIX: 'demokill:', RETRY_MS: '1000' }
  const started: ServerProcess[] = []
  t.teardown(() => { for (const s of started) s.child.kill('SIGKILL') })
  const start = async (port: number): Promise<ServerProcess> => {
    const server = await startServer({ ...env, PORT: String(port) })
    started.push(server)
    return server
  }
  // One after the other: on a busy machine, tsx compiling for several at once is slow.
  const servers = [await start(ports[0]), await start(ports[1])]
  const proxyPort = await freePort()
  const proxy = `http://127.0.0.1:${proxyPort}`
  const conf = renderNginxConf(await readFile(NGINX_CONF, 'utf8'), { upstreams: ports.map(p => `127.0.0.1:${p}`), port: proxyPort, dir })
  const nginx = await startNginx(nginxBin, dir, conf, proxy)
  t.teardown(async () => {
    if (nginx.exitCode !== null || nginx.signalCode !== null) return
    nginx.kill('SIGTERM')
    await once(nginx, 'exit')
  })

  const page = await browser.newPage()
  t.teardown(() => page.close())
  await page.goto(`${proxy}/?topic=crash`)
  await untilState(page, 'open')
  const ids: string[] = []
  const publish = async (data: string): Promise<void> => {
    const res = await notify(proxy, { topic: 'crash', data })
    t.equal(res.status, 202, `${data} accepted`)
    ids.push(res.body.id)
  }
  for (const data of ['e1', 'e2', 'e3']) await publish(data)
  await untilRows(page, 3)

  const clients = await Promise.all(servers.map(async s => (await (await fetch(`${s.url}/health`)).json()).clients))
  const holder = clients.indexOf(1)
  t.ok(holder !== -1, `the page's stream is on one instance (${clients})`)
  servers[holder].child.kill('SIGKILL')
  await servers[holder].exited
  for (const data of ['e4', 'e5']) await publish(data)
  await untilRows(page, 5, 'message', 10_000)
  await untilState(page, 'open')
  t.equal(await text(page, '#reconnects'), '1', 'one reconnect, through nginx to another instance')

  for (const s of servers) s.child.kill('SIGKILL')
  await Promise.all(servers.map(async s => await s.exited))
  t.equal((await notify(proxy, { topic: 'crash', data: 'nobody there' })).status, 502, 'no instance: nothing is accepted')
  await new Promise(resolve => setTimeout(resolve, 5000)) // the outage the page has to sit out
  t.not(await page.getAttribute('#state', 'data-state'), 'closed', 'EventSource has not given up during the outage')

  servers[0] = await start(ports[holder])
  // nginx takes a peer that failed out of rotation for a while (fail_timeout): until it
  // routes to the instance again, a publish is a 502 and nothing is accepted, so the
  // publisher tries again (on a slow machine this has taken over 15 s).
  for (const data of ['e6', 'e7']) {
    for (const until = Date.now() + 40_000; Date.now() < until;) {
      const res = await notify(proxy, { topic: 'crash', data })
      if (res.status === 502) {
        await new Promise(resolve => setTimeout(resolve, 200))
        continue
      }
      t.equal(res.status, 202, `${data} accepted`)
      ids.push(res.body.id)
      break
    }
  }
  t.equal(ids.length, 7, 'e6 and e7 accepted once nginx routes to the instance again')
  await untilRows(page, 7, 'message', 20_000)
  await untilState(page, 'open')
  const rows = (await eventRows(page)).filter(r => r.event === 'message')
  t.same(rows.map(r => r.data), ['e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7'], 'every event once, in order')
  t.same(rows.map(r => r.id), ids, 'with the ids the publisher got')
  t.ok(Number(await text(page, '#reconnects')) >= 2, 'it reconnected by itself')
})
