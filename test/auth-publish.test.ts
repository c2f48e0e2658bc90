// Publisher auth: POST /notify with PUBLISH_AUTH=on publishes only where its credential allows.
import t from 'tap'
import { notify, SseClient, startInstance } from './helpers/instance.js'
import { now, publisherToken, SECRET, sign, subscriberToken } from './helpers/jwt.js'

const TOKEN_A = 'publisher-token-aaaaaaaaaaaa'
const TOKEN_B = 'publisher-token-bbbbbbbbbbbb'

t.test('static tokens: several for rotation, anything else is a 401 that publishes nothing', async t => {
  const { app, url } = await startInstance({ PUBLISH_AUTH: 'on', PUBLISH_TOKENS: `${TOKEN_A}, ${TOKEN_B}` })
  t.teardown(() => app.close())
  const observer = await SseClient.open(`${url}/stream?topic=t`)
  t.teardown(() => observer.close())
  const body = { topic: 't', data: 'x' }
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['no token', {}, /publishing needs a token: Authorization: Bearer <token>/],
    ['wrong token', { authorization: 'Bearer publisher-token-cccccccccccc' }, /not one of PUBLISH_TOKENS/],
    ['a prefix of a token', { authorization: `Bearer ${TOKEN_A.slice(0, -1)}` }, /not one of PUBLISH_TOKENS/],
    ['a token plus a byte', { authorization: `Bearer ${TOKEN_A}a` }, /not one of PUBLISH_TOKENS/],
    ['two tokens joined', { authorization: `Bearer ${TOKEN_A},${TOKEN_B}` }, /not one of PUBLISH_TOKENS/],
    ['Basic scheme', { authorization: `Basic ${Buffer.from(`x:${TOKEN_A}`).toString('base64')}` }, /must be "Bearer <token>"/],
    ['token in a cookie', { cookie: `sse_token=${TOKEN_A}` }, /needs a token/],
    ['a JWT where only static tokens are configured', { authorization: `Bearer ${publisherToken(['*'])}` }, /not one of PUBLISH_TOKENS/]
  ]
  for (const [what, headers, message] of cases) {
    const res = await notify(url, body, headers)
    t.equal(res.status, 401, what)
    t.match(res.body.message, message, what)
    t.match(res.headers.get('www-authenticate'), /^Bearer realm="sse-fanout"/, `${what}: WWW-Authenticate`)
  }
  t.equal((await notify(url, 'not even json', {})).status, 401, 'auth comes before the body is parsed')
  for (const token of [TOKEN_A, TOKEN_B]) {
    const res = await notify(url, { topic: 't', data: token.slice(-1) }, { authorization: `Bearer ${token}` })
    t.equal(res.status, 202)
  }
  const broadcast = await notify(url, { data: 'all' }, { authorization: `bearer ${TOKEN_A}` })
  t.equal(broadcast.status, 202, 'a static token may publish anywhere, broadcasts too (scheme is case-insensitive)')
  await observer.untilEvents(3)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(observer.events.map(e => e.data), ['a', 'b', 'all'], 'only the accepted publishes reached the stream')
})

t.test('JWT publishers: claims say where; forbidden is a 403 and the whole batch is refused', async t => {
  const { app, url } = await startInstance({ PUBLISH_AUTH: 'on', JWT_SECRET: SECRET, PUBLISH_TOKENS: TOKEN_A })
  t.teardown(() => app.close())
  const observer = await SseClient.open(`${url}/stream?topic=orders:1&topic=user:42`)
  t.teardown(() => observer.close())
  const orders = { authorization: `Bearer ${publisherToken(['orders:*'])}` }
  const cases: Array<[string, unknown, Record<string, string>, number, RegExp]> = [
    ['other topic', { topic: 'user:42', data: 1 }, orders, 403, /^this token may not publish to topic "user:42"$/],
    ['one of two topics', { topic: ['orders:1', 'user:42'], data: 1 }, orders, 403, /"user:42"/],
    ['a batch with one forbidden event', [{ topic: 'orders:1', data: 1 }, { topic: 'user:42', data: 2 }], orders, 403, /^body\[1\]: this token may not publish to topic "user:42"/],
    ['a broadcast without "*"', { data: 1 }, orders, 403, /may not publish a broadcast.*"\*"/],
    ['a subscriber token', { topic: 'orders:1', data: 1 }, { authorization: `Bearer ${subscriberToken(['*'])}` }, 403, /may not publish to topic "orders:1"/],
    ['expired', { topic: 'orders:1', data: 1 }, { authorization: `Bearer ${publisherToken(['*'], { exp: now(-5) })}` }, 401, /expired/],
    ['alg none', { topic: 'orders:1', data: 1 }, { authorization: `Bearer ${publisherToken(['*'], {}, { alg: 'none' })}` }, 401, /unsigned/],
    ['wrong secret', { topic: 'orders:1', data: 1 }, { authorization: `Bearer ${publisherToken(['*'], {}, { key: 'x'.repeat(40) })}` }, 401, /signature is invalid/],
    ['neither token nor JWT', { topic: 'orders:1', data: 1 }, { authorization: 'Bearer nope' }, 401, /neither a publish token nor a valid JWT/]
  ]
  for (const [what, body, headers, status, message] of cases) {
    const res = await notify(url, body, headers)
    t.equal(res.status, status, what)
    t.match(res.body.message, message, what)
  }
  const ok = await notify(url, [{ topic: 'orders:1', data: 'o1' }, { topic: ['orders:2', 'orders:1'], data: 'o2' }], orders)
  t.equal(ok.status, 202, 'allowed topics')
  const all = await notify(url, { data: 'b' }, { authorization: `Bearer ${sign({ sse: { publish: ['*'] } })}` })
  t.equal(all.status, 202, 'a "*" publish claim may broadcast')
  const both = await notify(url, { topic: 'user:42', data: 'u' }, { authorization: `Bearer ${TOKEN_A}` })
  t.equal(both.status, 202, 'static tokens work beside JWTs')
  await observer.untilEvents(4)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(observer.events.map(e => e.data), ['o1', 'o2', 'b', 'u'], 'no refused event reached the stream')
})

t.test('a schema error still answers 400 for an authorized publisher; 401 comes first otherwise', async t => {
  const { app, url } = await startInstance({ PUBLISH_AUTH: 'on', PUBLISH_TOKENS: TOKEN_A })
  t.teardown(() => app.close())
  const bad = { topic: 'a b', data: 1 }
  t.equal((await notify(url, bad, { authorization: `Bearer ${TOKEN_A}` })).status, 400)
  t.equal((await notify(url, bad)).status, 401)
})

t.test('subscriber auth alone leaves publishing open, and the other way round', async t => {
  const { app, url } = await startInstance({ SUBSCRIBE_AUTH: 'on', JWT_SECRET: SECRET })
  const { app: app2, url: url2 } = await startInstance({ PUBLISH_AUTH: 'on', PUBLISH_TOKENS: TOKEN_A })
  t.teardown(() => Promise.all([app.close(), app2.close()]))
  t.equal((await notify(url, { topic: 't', data: 1 })).status, 202)
  const c = await SseClient.open(`${url2}/stream?topic=t`)
  t.equal(c.status, 200)
  c.close()
})
