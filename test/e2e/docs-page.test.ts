// GET /docs in a real browser: Swagger UI renders the document under the page's own
// Content-Security-Policy (scripts and styles from /docs/static only), with no violation.
import t from 'tap'
import { launchChromium } from '../helpers/chromium.js'
import { startInstance } from '../helpers/instance.js'

t.test('Chromium: /docs lists every operation and its policy blocks nothing it needs', async t => {
  const browser = await launchChromium(t)
  const { url } = await startInstance(t)
  const page = await browser.newPage()
  const problems: string[] = []
  page.on('console', message => { if (message.type() === 'error') problems.push(message.text()) })
  page.on('pageerror', err => problems.push(err.message))
  await page.goto(`${url}/docs`)
  await page.waitForSelector('.opblock-summary-path', { timeout: 20000 })
  const paths = await page.locator('.opblock-summary-path').allTextContents()
  t.same(paths.sort(), ['/', '/demo', '/health', '/metrics', '/notify', '/stream'])
  await page.locator('.opblock-summary-path', { hasText: '/stream' }).first().click()
  await page.waitForSelector('.parameters', { timeout: 5000 })
  t.match(await page.locator('.opblock-body').first().textContent(), /last-event-id/, 'the expanded operation shows its parameters')
  t.same(problems, [], 'no console error (a Content-Security-Policy violation would be one)')
})
