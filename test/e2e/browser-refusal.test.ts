// A real browser's EventSource refused at MAX_CLIENTS retries by itself and gets events
// once a slot frees: the page never reopens it and is never reloaded.
import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import { launchChromium } from '../helpers/chromium.js'
import { notify, SseClient, startInstance } from '../helpers/instance.js'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

// Opens the stream its query names (?stream=...), with cookies, and records what it sees.
const PAGE = `<!doctype html><title>refusal</title><script>
  window.seen = { refused: 0, messages: [], states: [] }
  window.es = new EventSource(new URLSearchParams(location.search).get('stream'), { withCredentials: true })
  es.addEventListener('refused', () => { seen.refused++ })
  es.onmessage = e => { seen.messages.push(e.data) }
  es.onerror = () => { seen.states.push(es.readyState) }
</script>`

/** Serves the page on an origin of its own; returns that origin. */
async function servePage (t: Test): Promise<string> {
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE))
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

interface Seen { refused: number, messages: string[], states: number[] }

t.test('Chromium: an EventSource refused at MAX_CLIENTS gets in by itself once the slot frees', async t => {
  const browser = await launchChromium(t)
  const origin = await servePage(t)
  // Cross-origin with credentials: the refusal must carry the CORS headers, or the page cannot read it.
  const { app, url } = await startInstance(t, { MAX_CLIENTS: 1, RETRY_MS: 1000, CORS_ORIGINS: origin })
  const holder = await SseClient.open(`${url}/stream?topic=t`)
  t.teardown(() => holder.close())
  const page = await browser.newPage()
  await page.goto(`${origin}/?stream=${encodeURIComponent(`${url}/stream?topic=t`)}`)
  const seen = async (): Promise<Seen> => await page.evaluate(() => (window as unknown as { seen: Seen }).seen)

  const deadline = Date.now() + 20000
  while ((await seen()).refused < 2 && Date.now() < deadline) await sleep(100)
  t.ok((await seen()).refused >= 2, `refused ${(await seen()).refused} times, and retried by itself`)
  t.equal(app.hub.size, 1, 'the slot is still taken')

  holder.close()
  // Published until it arrives: the page's EventSource comes back on its own time (retry:).
  while ((await seen()).messages.length === 0 && Date.now() < deadline) {
    await notify(url, { topic: 't', data: 'hello' })
    await sleep(300)
  }
  const final = await seen()
  t.equal(final.messages[0], 'hello', 'the same EventSource got the event, without a reload')
  t.notOk(final.states.includes(2), 'it never gave up (readyState 2, CLOSED)')
  t.equal(await page.evaluate(() => (window as unknown as { es: EventSource }).es.readyState), 1, 'and is open')
})
