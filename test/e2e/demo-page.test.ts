// The demo page in a real Chromium: what a user sees when events cross instances, when
// instances die behind nginx, and when the page is opened from a link or reloaded.
import type { Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { eventRows, launchChromium } from '../helpers/chromium.js'
import { notify, openStream, startInstance } from '../helpers/instance.js'
import { TestRedis } from '../helpers/redis.js'

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
