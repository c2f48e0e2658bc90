// buildApp as a whole: its logger never shows a secret, TRUST_PROXY says whose address a
// request has, and settings that contradict each other stop the start.
import t from 'tap'
import { Writable } from 'node:stream'
import { notify, openStream, startInstance } from './helpers/instance.js'
import { SECRET, subscriberToken } from './helpers/jwt.js'

function capture (): { stream: Writable, text: () => string } {
  let log = ''
  const stream = new Writable({ write (chunk, _encoding, done) { log += String(chunk); done() } })
  return { stream, text: () => log }
}

t.test('tokens in the URL, the Authorization header and cookies never reach the log', async t => {
  const { stream, text } = capture()
  const publishToken = 'publish-token-never-logged-0123'
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', PUBLISH_AUTH: 'on', JWT_SECRET: SECRET, PUBLISH_TOKENS: publishToken, LOG_LEVEL: 'trace' }, { level: 'trace', stream })
  const inQuery = subscriberToken(['t'], { n: 1 })
  const inHeader = subscriberToken(['t'], { n: 2 })
  const inCookie = subscriberToken(['t'], { n: 3 })
  const encoded = subscriberToken(['t'], { n: 4 })
  const refused = subscriberToken(['other'], { n: 5 })
  const streams = [
    await openStream(t, `${url}/stream?topic=t&token=${inQuery}`),
    await openStream(t, `${url}/stream?topic=t`, { authorization: `Bearer ${inHeader}` }),
    await openStream(t, `${url}/stream?topic=t`, { cookie: `sse_token=${inCookie}` }),
    await openStream(t, `${url}/stream?topic=t&%74oken=${encoded}`)
  ]
  t.same(streams.map(s => s.status), [200, 200, 200, 200])
  t.equal((await fetch(`${url}/stream?topic=t&token=${refused}`)).status, 403)
  t.equal((await notify(url, { data: 1 }, { authorization: `Bearer ${publishToken}` })).status, 202)
  t.equal((await notify(url, { data: 1 }, { authorization: `Bearer ${publishToken}x` })).status, 401)
  await new Promise(resolve => setTimeout(resolve, 100))
  const log = text()
  t.match(log, /"url":"\/stream\?topic=t&token=\[Redacted\]"/, 'the request is logged, its token redacted')
  for (const [what, secret] of [['query token', inQuery], ['header token', inHeader], ['cookie token', inCookie], ['encoded-name token', encoded], ['refused token', refused], ['publish token', publishToken], ['JWT secret', SECRET]]) {
    t.notOk(log.includes(secret), `${what} is not in the log`)
    t.notOk(log.includes(secret.split('.')[2] ?? secret), `nor its signature (${what})`)
  }
})

t.test('TRUST_PROXY decides whether X-Forwarded-For names the client', async t => {
  const { url: trustingUrl } = await startInstance(t, { RATE_LIMIT_PUBLISH: 1, TRUST_PROXY: 'loopback' })
  const { url: plainUrl } = await startInstance(t, { RATE_LIMIT_PUBLISH: 1 })
  const from = (ip: string): Record<string, string> => ({ 'x-forwarded-for': ip })
  t.equal((await notify(trustingUrl, { data: 1 }, from('10.0.0.1'))).status, 202)
  t.equal((await notify(trustingUrl, { data: 1 }, from('10.0.0.1'))).status, 429, 'same forwarded client')
  t.equal((await notify(trustingUrl, { data: 1 }, from('10.0.0.2'))).status, 202, 'another forwarded client has its own count')
  t.equal((await notify(plainUrl, { data: 1 }, from('10.0.0.1'))).status, 202)
  t.equal((await notify(plainUrl, { data: 1 }, from('10.0.0.2'))).status, 429, 'an untrusted X-Forwarded-For cannot dodge the limit')
})

t.test('HEADERS_TIMEOUT_MS above REQUEST_TIMEOUT_MS is refused at start', async t => {
  await t.rejects(startInstance(t, { HEADERS_TIMEOUT_MS: 5000, REQUEST_TIMEOUT_MS: 1000 }), /HEADERS_TIMEOUT_MS \(5000\) must not exceed REQUEST_TIMEOUT_MS/)
})
