// A page on another origin reads a stream with the token in a cookie, as a browser sends
// it: the page's own server sets the cookie at sign-in (HttpOnly, SameSite=Strict: the
// page and the service are on one site, two ports), the page opens
// `new EventSource(url, { withCredentials: true })`. Real Chromium, no mocks.
import { createServer } from 'node:http'
import type { Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { launchChromium, type Browser } from '../helpers/chromium.js'
import { notify, startInstance } from '../helpers/instance.js'
import { SECRET, subscriberToken } from '../helpers/jwt.js'

// What the user sees: the connection state and the events, one line each.
const PAGE = `<!doctype html><title>orders</title>
<p id="state">connecting</p><ul id="events"></ul>
<script>
  const state = document.getElementById('state')
  const es = new EventSource(new URLSearchParams(location.search).get('stream'), { withCredentials: true })
  es.onopen = () => { state.textContent = 'open' }
  es.onerror = () => { state.textContent = es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting' }
  es.onmessage = e => {
    const li = document.createElement('li')
    li.textContent = e.data
    document.getElementById('events').append(li)
  }
</script>`

/**
 * The application a user signs in to, on an origin of its own: /login sets the stream
 * token as a cookie of its host (cookies are per host, not per port, so the service on
 * another port of the same host gets it) and sends the browser on to the page.
 */
async function serveApp (t: Test, token: string): Promise<string> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://app')
    if (url.pathname === '/login') {
      res.writeHead(303, {
        'set-cookie': `sse_token=${token}; Path=/; HttpOnly; SameSite=Strict`,
        location: `/${url.search}`
      }).end()
      return
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

const WAIT = { timeout: 10000 }

/** The state once the stream has opened or been given up on. */
async function settled (page: Page): Promise<string> {
  await page.waitForFunction(() => ['open', 'closed'].includes(document.getElementById('state')?.textContent ?? ''), null, WAIT)
  return (await page.textContent('#state')) ?? ''
}

async function shown (page: Page): Promise<string[]> {
  return await page.$$eval('#events li', items => items.map(li => li.textContent ?? ''))
}

async function untilShown (page: Page, data: string): Promise<void> {
  await page.waitForFunction(data => [...document.querySelectorAll('#events li')].some(li => li.textContent === data), data, WAIT)
}

/** Opens the page on `app` for the stream `stream`, signed in first when `login`. */
async function openPage (t: Test, browser: Browser, app: string, stream: string, login: boolean): Promise<{ page: Page, statuses: number[], errors: string[] }> {
  const page = await browser.newPage()
  t.teardown(() => page.close())
  const statuses: number[] = []
  const errors: string[] = []
  page.on('response', res => { if (res.url() === stream) statuses.push(res.status()) })
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()) })
  await page.goto(`${app}/${login ? 'login' : ''}?stream=${encodeURIComponent(stream)}`)
  return { page, statuses, errors }
}

const token = subscriberToken(['orders'])
const app = await serveApp(t, token)
const AUTH = { SUBSCRIBE_AUTH: 'on', JWT_SECRET: SECRET }

t.test('signed in on another origin: the cookie reaches the stream and the page shows what is published; without it, 401', async t => {
  const { url } = await startInstance(t, { ...AUTH, CORS_ORIGINS: app })
  const stream = `${url}/stream?topic=orders`
  // Two users, each with a browser (a profile) of their own: one signed in, one not.
  const [alice, bob] = await Promise.all([launchChromium(t), launchChromium(t)])

  const signedIn = await openPage(t, alice, app, stream, true)
  if (!t.equal(await settled(signedIn.page), 'open', 'the signed-in page\'s stream is open')) return
  const cookies = await alice.context.cookies(url)
  t.equal(cookies.length, 1, 'the browser has one cookie for the service\'s origin')
  t.match(cookies[0], { name: 'sse_token', value: token, domain: '127.0.0.1', httpOnly: true, sameSite: 'Strict' },
    'the one the app\'s origin set at sign-in')
  const first = await notify(url, { topic: 'orders', data: 'order 1 shipped' })
  t.equal(first.status, 202)
  await untilShown(signedIn.page, 'order 1 shipped')
  t.same(signedIn.statuses, [200], 'one stream request, answered 200')

  const anonymous = await openPage(t, bob, app, stream, false)
  t.equal(await settled(anonymous.page), 'closed', 'no cookie: the EventSource gave up (readyState CLOSED)')
  t.same(anonymous.statuses, [401], 'on a 401')
  t.same(await bob.context.cookies(url), [], 'bob never signed in')
  await notify(url, { topic: 'orders', data: 'order 2 shipped' })
  await untilShown(signedIn.page, 'order 2 shipped')
  t.same(await shown(signedIn.page), ['order 1 shipped', 'order 2 shipped'], 'the signed-in page shows both, once each')
  t.same(await shown(anonymous.page), [], 'the other shows nothing')
  t.equal(await anonymous.page.textContent('#state'), 'closed')
})

t.test('the page\'s origin not allowed with credentials: the browser refuses the stream though its cookie is good', async t => {
  const browser = await launchChromium(t)
  for (const [cors, why] of [
    ['https://app.example.com', /has been blocked by CORS policy: .*Access-Control-Allow-Origin/],
    ['*', /has been blocked by CORS policy: .*wildcard '\*' when the request's credentials mode is 'include'/]
  ] as const) {
    await t.test(`CORS_ORIGINS=${cors}`, async t => {
      const { url } = await startInstance(t, { ...AUTH, CORS_ORIGINS: cors })
      const stream = `${url}/stream?topic=orders`
      const { page, errors } = await openPage(t, browser, app, stream, true)
      t.equal(await settled(page), 'closed', 'the EventSource gave up (readyState CLOSED)')
      t.match(errors.join('\n'), why, 'the console says why')
      await notify(url, { topic: 'orders', data: 'not for this page' })
      t.same(await shown(page), [], 'no event shown')
    })
  }
})
