// GET / and /demo: the page, its Content-Security-Policy, and DEMO_PAGE=off.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { startInstance } from '../helpers/instance.js'

const html = readFileSync(new URL('../../public/demo.html', import.meta.url), 'utf8')
const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`

t.test('the page is served at / and /demo, with a policy that allows only itself', async t => {
  const { app } = await startInstance(t)
  const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]
  const style = /<style>([\s\S]*?)<\/style>/.exec(html)![1]
  for (const url of ['/', '/demo', '/?topic=a&topic=b']) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, 200, url)
    t.match(res.headers['content-type'], /^text\/html; charset=utf-8/)
    t.equal(res.body, html)
    const csp = String(res.headers['content-security-policy'])
    t.match(csp, /default-src 'none'/)
    t.match(csp, `script-src ${sha256(script)}`, 'the inline script by its hash, nothing else')
    t.match(csp, `style-src ${sha256(style)}`)
    t.match(csp, "connect-src 'self'", 'EventSource and fetch to this origin only')
    t.match(csp, "frame-ancestors 'none'")
    t.notMatch(csp, /unsafe-inline|unsafe-eval|\*/)
  }
  t.equal((await app.inject({ method: 'HEAD', url: '/demo' })).statusCode, 200)
})

t.test('the page is plain HTML with one inline script and no outside resource', async t => {
  t.equal(html.match(/<script/g)?.length, 1)
  t.notMatch(html, /<script[^>]+src=|<link[^>]+stylesheet|https?:\/\//, 'nothing loaded from elsewhere')
  t.match(html, 'new EventSource(')
  t.notMatch(html, /innerHTML/, 'published data is shown as text, never parsed as HTML')
})

t.test('DEMO_PAGE=off: / and /demo are 404, the API is unchanged', async t => {
  const { app } = await startInstance(t, { DEMO_PAGE: 'off' })
  t.equal((await app.inject({ url: '/' })).statusCode, 404)
  t.equal((await app.inject({ url: '/demo' })).statusCode, 404)
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)
})
