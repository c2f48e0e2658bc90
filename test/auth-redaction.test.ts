// No secret in the logs: tokens in headers, cookies and URLs, and REDIS_URL passwords.
import t from 'tap'
import { Writable } from 'node:stream'
import { redactQuery } from '../src/log-redaction.js'
import { notify, SseClient, startInstance } from './helpers/instance.js'
import { SECRET, subscriberToken } from './helpers/jwt.js'
import { freePort } from './helpers/redis.js'

function capture (): { stream: Writable, text: () => string } {
  let log = ''
  const stream = new Writable({ write (chunk, _encoding, done) { log += String(chunk); done() } })
  return { stream, text: () => log }
}

t.test('redactQuery hides credential parameters however they are spelled', async t => {
  t.equal(redactQuery('/stream?topic=a&token=abc.def.ghi&x=1'), '/stream?topic=a&token=[Redacted]&x=1')
  t.equal(redactQuery('/stream?token=abc'), '/stream?token=[Redacted]')
  t.equal(redactQuery('/stream?%74oken=abc'), '/stream?%74oken=[Redacted]', 'an encoded name')
  t.equal(redactQuery('/stream?TOKEN=abc&access_token=def&jwt=g&authorization=h'), '/stream?TOKEN=[Redacted]&access_token=[Redacted]&jwt=[Redacted]&authorization=[Redacted]')
  t.equal(redactQuery('/stream?token'), '/stream?token=[Redacted]')
  t.equal(redactQuery('/stream?%E0%A4%A=1&token=x'), '/stream?%E0%A4%A=1&token=[Redacted]', 'a malformed name elsewhere does not stop it')
  t.equal(redactQuery('/stream?topic=token'), '/stream?topic=token', 'a value named token is not a token')
  t.equal(redactQuery('/health'), '/health')
})

t.test('tokens in the URL, the Authorization header and cookies never reach the log', async t => {
  const { stream, text } = capture()
  const publishToken = 'publish-token-never-logged-0123'
  const { app, url } = await startInstance({ SUBSCRIBE_AUTH: 'on', PUBLISH_AUTH: 'on', JWT_SECRET: SECRET, PUBLISH_TOKENS: publishToken, LOG_LEVEL: 'trace' }, { level: 'trace', stream })
  t.teardown(() => app.close())
  const inQuery = subscriberToken(['t'], { n: 1 })
  const inHeader = subscriberToken(['t'], { n: 2 })
  const inCookie = subscriberToken(['t'], { n: 3 })
  const encoded = subscriberToken(['t'], { n: 4 })
  const refused = subscriberToken(['other'], { n: 5 })
  const streams = [
    await SseClient.open(`${url}/stream?topic=t&token=${inQuery}`),
    await SseClient.open(`${url}/stream?topic=t`, { authorization: `Bearer ${inHeader}` }),
    await SseClient.open(`${url}/stream?topic=t`, { cookie: `sse_token=${inCookie}` }),
    await SseClient.open(`${url}/stream?topic=t&%74oken=${encoded}`)
  ]
  t.teardown(() => streams.forEach(s => s.close()))
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

t.test('a REDIS_URL password never reaches the log', async t => {
  const { stream, text } = capture()
  const password = 'redis-password-never-logged'
  const port = await freePort()
  const { app } = await startInstance({ REDIS_URL: `redis://user:${password}@127.0.0.1:${port}`, REDIS_CONNECT_TIMEOUT_MS: 200, LOG_LEVEL: 'trace' }, { level: 'trace', stream })
  await new Promise(resolve => setTimeout(resolve, 500))
  await app.close()
  const log = text()
  t.match(log, /127\.0\.0\.1/, 'the Redis address is logged')
  t.notOk(log.includes(password), 'its password is not')
})
