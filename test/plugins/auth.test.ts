// Auth: GET /stream with SUBSCRIBE_AUTH=on reads only what its JWT allows; POST /notify
// with PUBLISH_AUTH=on publishes only where its credential allows.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../../app.js'
import { notify, openStream, SseClient, startInstance } from '../helpers/instance.js'
import { keyPair, now, publisherToken, SECRET, sign, subscriberToken } from '../helpers/jwt.js'

const AUTH = { SUBSCRIBE_AUTH: 'on', JWT_SECRET: SECRET }
const TOKEN_A = 'publisher-token-aaaaaaaaaaaa'
const TOKEN_B = 'publisher-token-bbbbbbbbbbbb'

async function get (url: string, headers: Record<string, string> = {}): Promise<{ status: number, message: string, headers: Headers }> {
  const res = await fetch(url, { headers })
  // A stream that opened would never end: note it and hang up.
  if (res.headers.get('content-type')?.startsWith('text/event-stream') === true) {
    await res.body?.cancel()
    return { status: res.status, message: '(stream)', headers: res.headers }
  }
  const text = await res.text()
  let message = text
  try { message = JSON.parse(text).message } catch {}
  return { status: res.status, message, headers: res.headers }
}

t.test('without SUBSCRIBE_AUTH every stream is open, tokens or not', async t => {
  const { url } = await startInstance(t)
  const plain = await openStream(t, `${url}/stream?topic=user:1`)
  const garbage = await openStream(t, `${url}/stream?topic=user:1&token=garbage`, { authorization: 'Bearer nonsense' })
  t.equal(plain.status, 200)
  t.equal(garbage.status, 200, 'a token is not even looked at')
})

t.test('the auth matrix: every bad token is a 401 naming why, a good one a 200', async t => {
  const { app, url } = await startInstance(t, AUTH)
  const stream = `${url}/stream?topic=user:42`
  const good = subscriberToken(['user:42'])
  const cases: Array<[string, Record<string, string>, number, RegExp]> = [
    ['no token', {}, 401, /needs a token: Authorization: Bearer <jwt>, the sse_token cookie or \?token=<jwt>/],
    ['not a bearer header', { authorization: `Basic ${good}` }, 401, /must be "Bearer <token>"/],
    ['empty bearer', { authorization: 'Bearer ' }, 401, /must be "Bearer <token>"/],
    ['not a JWT', { authorization: 'Bearer abc.def' }, 401, /not a JWT/],
    ['garbage header segment', { authorization: 'Bearer !!!.e30.sig' }, 401, /not a JWT/],
    ['wrong secret', { authorization: `Bearer ${subscriberToken(['user:42'], {}, { key: 'another-secret-of-at-least-32-chars!!' })}` }, 401, /signature is invalid/],
    ['alg none', { authorization: `Bearer ${subscriberToken(['user:42'], {}, { alg: 'none' })}` }, 401, /unsigned/],
    ['alg NoNe', { authorization: `Bearer ${sign({ sse: { subscribe: ['user:42'] } }, { alg: 'none', header: { alg: 'NoNe' } })}` }, 401, /unsigned/],
    ['alg none with a signature copied from a good token', { authorization: `Bearer ${subscriberToken(['user:42'], {}, { alg: 'none' })}${good.split('.')[2]}` }, 401, /unsigned|algorithm/],
    ['expired', { authorization: `Bearer ${subscriberToken(['user:42'], { exp: now(-10) })}` }, 401, /expired/],
    ['not yet valid', { authorization: `Bearer ${subscriberToken(['user:42'], { nbf: now(600) })}` }, 401, /not valid yet/],
    ['payload tampered', { authorization: `Bearer ${good.split('.')[0]}.${Buffer.from(JSON.stringify({ sse: { subscribe: ['*'] } })).toString('base64url')}.${good.split('.')[2]}` }, 401, /signature is invalid/],
    ['claim not an array', { authorization: `Bearer ${sign({ sse: { subscribe: 'user:42' } })}` }, 401, /sse\.subscribe must be an array/],
    ['claim not an object', { authorization: `Bearer ${sign({ sse: ['user:42'] })}` }, 401, /claim sse must be an object/],
    ['claim with a non-string', { authorization: `Bearer ${sign({ sse: { subscribe: ['user:42', 7] } })}` }, 401, /must be an array of topic patterns/],
    ['no claim: nothing to read', { authorization: `Bearer ${sign({ sub: 'x' })}` }, 403, /may not read topic "user:42"/],
    ['forbidden topic', { authorization: `Bearer ${subscriberToken(['user:41'])}` }, 403, /this token may not read topic "user:42"/],
    ['prefix that does not match', { authorization: `Bearer ${subscriberToken(['user:42:*'])}` }, 403, /may not read topic "user:42"/]
  ]
  for (const [what, headers, status, message] of cases) {
    const res = await get(stream, headers)
    t.equal(res.status, status, what)
    t.match(res.message, message, what)
    if (status === 401) t.match(res.headers.get('www-authenticate'), /^Bearer realm="sse-fanout"/, `${what}: WWW-Authenticate`)
  }
  for (const [what, topics] of [['exact', ['user:42']], ['wildcard', ['user:*']], ['everything', ['*']], ['one of several', ['a', 'user:42', 'b']]] as const) {
    const c = await SseClient.open(stream, { authorization: `Bearer ${subscriberToken([...topics])}` })
    t.equal(c.status, 200, `allowed: ${what}`)
    c.close()
  }
  const two = await get(`${url}/stream?topic=user:42&topic=user:43`, { authorization: `Bearer ${good}` })
  t.equal(two.status, 403, 'every topic of the stream must be allowed')
  t.match(two.message, /"user:43"/)
  t.equal(app.hub.size, 0, 'no refused request left a client behind')
})

t.test('an allowed stream gets its topics and broadcasts, nothing else', async t => {
  const { url } = await startInstance(t, AUTH)
  const c = await openStream(t, `${url}/stream?topic=orders:1&topic=user:42`, { authorization: `Bearer ${subscriberToken(['user:42', 'orders:*'])}` })
  t.equal(c.status, 200)
  await notify(url, [{ topic: 'user:43', data: 'not yours' }, { topic: 'orders:1', data: 'order' }, { topic: 'user:42', data: 'mine' }, { data: 'all' }])
  await c.untilEvents(3)
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(c.events.map(e => e.data), ['order', 'mine', 'all'])
})

t.test('the token may come in the header, a cookie or ?token=; the query can be turned off', async t => {
  const { url } = await startInstance(t, { ...AUTH, AUTH_COOKIE_NAME: 'my_auth' })
  const token = subscriberToken(['t'])
  const stream = `${url}/stream?topic=t`
  const header = await openStream(t, stream, { authorization: `Bearer ${token}` })
  const cookie = await openStream(t, stream, { cookie: `other=1; my_auth=${token}; x=y` })
  const query = await openStream(t, `${stream}&token=${token}`)
  t.same([header.status, cookie.status, query.status], [200, 200, 200])
  await notify(url, { topic: 't', data: 'hello' })
  for (const c of [header, cookie, query]) await c.untilEvents(1)

  t.equal((await get(stream, { cookie: `sse_token=${token}` })).status, 401, 'a cookie of another name is not read')
  const both = await SseClient.open(`${stream}&token=garbage`, { authorization: `Bearer ${token}` })
  t.equal(both.status, 200, 'the header wins over the query')
  both.close()
  const stale = await SseClient.open(`${stream}&token=${token}`, { cookie: `my_auth=${subscriberToken(['t'], { exp: now(-5) })}` })
  t.equal(stale.status, 200, 'an explicit ?token= wins over a stale cookie')
  stale.close()
  t.equal((await get(`${stream}&token=${token}&token=${token}`)).status, 401, 'a repeated token parameter is refused')

  const { url: strictUrl } = await startInstance(t, { ...AUTH, SUBSCRIBE_TOKEN_QUERY: 'off' })
  const off = await get(`${strictUrl}/stream?topic=t&token=${token}`)
  t.equal(off.status, 400)
  t.match(off.message, /token query parameter is turned off \(SUBSCRIBE_TOKEN_QUERY=off\)/)
  const noQuery = await get(`${strictUrl}/stream?topic=t`)
  t.notMatch(noQuery.message, /\?token=/, 'the 401 does not suggest the query when it is off')
  const viaCookie = await SseClient.open(`${strictUrl}/stream?topic=t`, { cookie: `sse_token=${token}` })
  t.equal(viaCookie.status, 200)
  viaCookie.close()
})

t.test('a stream ends when its token expires, not before', async t => {
  const { app, url } = await startInstance(t, { ...AUTH, HEARTBEAT_INTERVAL_MS: 200 })
  const exp = now(2)
  const expiresAt = exp * 1000
  const short = await openStream(t, `${url}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'], { exp })}` })
  const long = await openStream(t, `${url}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'])}` })
  const forever = await openStream(t, `${url}/stream?topic=t`, { authorization: `Bearer ${sign({ sse: { subscribe: ['t'] } })}` })
  t.equal(short.status, 200)
  t.equal(app.hub.size, 3)
  await notify(url, { topic: 't', data: 'before' })
  await short.untilEvents(1)
  await short.until(c => c.ended, expiresAt - Date.now() + 2500, 'the end of the stream')
  const late = Date.now() - expiresAt
  t.ok(late >= 0, `ended at or after exp (${late} ms)`)
  t.ok(late < 1500, `ended within 1.5 s of exp (${late} ms)`)
  t.ok(short.comments.includes('token expired'), 'the last thing sent says why')
  t.equal(app.hub.size, 2, 'the expired client left the hub')
  await notify(url, { topic: 't', data: 'after' })
  await long.untilEvents(2)
  await forever.untilEvents(2)
  t.notOk(long.ended, 'a stream with a valid token goes on')
  t.notOk(forever.ended, 'a token without exp never ends the stream')
  t.same(short.events.map(e => e.data), ['before'])
})

t.test('a clock tolerance delays both the refusal and the end of the stream', async t => {
  const { url } = await startInstance(t, { ...AUTH, JWT_CLOCK_TOLERANCE_MS: 3000 })
  const exp = now(-1)
  const c = await openStream(t, `${url}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'], { exp })}` })
  t.equal(c.status, 200, 'just expired, within the tolerance')
  await c.until(x => x.ended, 4000, 'the end of the stream')
  const late = Date.now() - (exp * 1000 + 3000)
  t.ok(late >= 0 && late < 1500, `ended at exp + tolerance (${late} ms)`)
})

t.test('audience and issuer are checked when configured', async t => {
  const { url } = await startInstance(t, { ...AUTH, JWT_AUDIENCE: 'sse-fanout', JWT_ISSUER: 'https://auth.example' })
  const stream = `${url}/stream?topic=t`
  const cases: Array<[string, Record<string, unknown>, number, RegExp | null]> = [
    ['right aud and iss', { aud: 'sse-fanout', iss: 'https://auth.example' }, 200, null],
    ['aud as an array holding ours', { aud: ['other', 'sse-fanout'], iss: 'https://auth.example' }, 200, null],
    ['wrong audience', { aud: 'other', iss: 'https://auth.example' }, 401, /aud/],
    ['no audience', { iss: 'https://auth.example' }, 401, /aud/],
    ['wrong issuer', { aud: 'sse-fanout', iss: 'https://evil.example' }, 401, /iss/],
    ['no issuer', { aud: 'sse-fanout' }, 401, /iss/]
  ]
  for (const [what, claims, status, message] of cases) {
    if (status === 200) {
      const c = await SseClient.open(stream, { authorization: `Bearer ${subscriberToken(['t'], claims)}` })
      t.equal(c.status, 200, what)
      c.close()
      continue
    }
    const res = await get(stream, { authorization: `Bearer ${subscriberToken(['t'], claims)}` })
    t.equal(res.status, status, what)
    t.match(res.message, message!, what)
  }
})

t.test('public topics are readable without a token, and with one', async t => {
  const { url } = await startInstance(t, { ...AUTH, PUBLIC_TOPICS: 'news, public:*' })
  const anon = await openStream(t, `${url}/stream?topic=news&topic=public:weather`)
  const broadcasts = await openStream(t, `${url}/stream`)
  const user = await openStream(t, `${url}/stream?topic=news&topic=user:42`, { authorization: `Bearer ${subscriberToken(['user:42'])}` })
  t.same([anon.status, broadcasts.status, user.status], [200, 200, 200])
  const res = await get(`${url}/stream?topic=news&topic=user:42`)
  t.equal(res.status, 403)
  t.match(res.message, /a stream without a token \(PUBLIC_TOPICS\) may not read topic "user:42"/)
  t.equal((await get(`${url}/stream?topic=newsroom`)).status, 403, '"news" is a name, not a prefix')
  t.equal((await get(`${url}/stream?topic=news`, { authorization: 'Bearer bad.token.here' })).status, 401, 'a bad token is refused, not taken as no token')
  await notify(url, [{ topic: 'news', data: 'n' }, { topic: 'user:42', data: 'u' }, { data: 'b' }])
  await anon.untilEvents(2)
  await user.untilEvents(3)
  await broadcasts.untilEvents(1)
  t.same(anon.events.map(e => e.data), ['n', 'b'])
  t.same(user.events.map(e => e.data), ['n', 'u', 'b'])
  t.same(broadcasts.events.map(e => e.data), ['b'])
})

t.test('RS256 and ES256 public keys, alone or beside a secret', async t => {
  const rsa = keyPair('rsa')
  const ec = keyPair('ec')
  const other = keyPair('ec')
  const { url: rsUrl } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_PUBLIC_KEY: rsa.publicPem.replace(/\n/g, '\\n') })
  const { url: esUrl } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_PUBLIC_KEY: ec.publicPem, JWT_SECRET: SECRET })

  const rs = await SseClient.open(`${rsUrl}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'], {}, { alg: 'RS256', key: rsa.privateKey })}` })
  t.equal(rs.status, 200, 'RS256 with the configured key')
  rs.close()
  const hsOnRsa = await get(`${rsUrl}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'])}` })
  t.equal(hsOnRsa.status, 401, 'HS256 is refused where only a public key is configured')
  t.match(hsOnRsa.message, /algorithm is not accepted/)
  const confused = subscriberToken(['t'], {}, { key: rsa.publicPem })
  t.equal((await get(`${rsUrl}/stream?topic=t`, { authorization: `Bearer ${confused}` })).status, 401, 'HS256 signed with the public key (algorithm confusion) is refused')
  t.equal((await get(`${rsUrl}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'], {}, { alg: 'ES256', key: ec.privateKey })}` })).status, 401, 'ES256 with a key of another type')

  const es = await SseClient.open(`${esUrl}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'], {}, { alg: 'ES256', key: ec.privateKey })}` })
  const hs = await SseClient.open(`${esUrl}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'])}` })
  t.same([es.status, hs.status], [200, 200], 'ES256 and HS256 side by side')
  es.close()
  hs.close()
  const wrongKey = await get(`${esUrl}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'], {}, { alg: 'ES256', key: other.privateKey })}` })
  t.equal(wrongKey.status, 401, 'ES256 signed by another key')
  t.match(wrongKey.message, /signature is invalid/)
})

t.test('several static keys for rotation: concatenated PEM keys, JWT_SECRET beside JWT_SECRETS', async t => {
  const rsa = keyPair('rsa')
  const ec = keyPair('ec')
  const ed = keyPair('ed25519')
  const other = keyPair('rsa')
  const second = 'the-second-secret-of-32-characters!!'
  const third = 'the-third-secret-of-at-least-32-chars'
  const file = join(mkdtempSync(join(tmpdir(), 'sse-keys-')), 'keys.pem')
  writeFileSync(file, `# old and new key\n${rsa.publicPem}\n${ec.publicPem}${ed.publicPem}`)
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_PUBLIC_KEY_FILE: file, JWT_SECRET: SECRET, JWT_SECRETS: ` ${second}, ${third} ` })
  const { url: inlineUrl } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_PUBLIC_KEY: (rsa.publicPem + ec.publicPem).replace(/\n/g, '\\n') })
  const stream = `${url}/stream?topic=t`
  for (const [what, token] of [
    ['the first PEM key', subscriberToken(['t'], {}, { alg: 'RS256', key: rsa.privateKey })],
    ['the second PEM key', subscriberToken(['t'], {}, { alg: 'ES256', key: ec.privateKey })],
    ['the third PEM key (Ed25519)', subscriberToken(['t'], {}, { alg: 'EdDSA', key: ed.privateKey })],
    ['JWT_SECRET', subscriberToken(['t'])],
    ['the first of JWT_SECRETS', subscriberToken(['t'], {}, { key: second })],
    ['the second of JWT_SECRETS', subscriberToken(['t'], {}, { alg: 'HS384', key: third })]
  ] as const) {
    const c = await SseClient.open(stream, { authorization: `Bearer ${token}` })
    t.equal(c.status, 200, what)
    c.close()
  }
  const inline = await SseClient.open(`${inlineUrl}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'], {}, { alg: 'ES256', key: ec.privateKey })}` })
  t.equal(inline.status, 200, 'the second of two inline PEM keys')
  inline.close()
  const cases: Array<[string, string, RegExp]> = [
    ['a key that is none of them', subscriberToken(['t'], {}, { alg: 'RS256', key: other.privateKey }), /^token rejected: its signature is invalid$/],
    ['a secret that is none of them', subscriberToken(['t'], {}, { key: 'x'.repeat(40) }), /^token rejected: its signature is invalid$/],
    ['expired, signed by the second key', subscriberToken(['t'], { exp: now(-10) }, { alg: 'ES256', key: ec.privateKey }), /^token rejected: it has expired$/],
    ['expired, signed by a secret of JWT_SECRETS', subscriberToken(['t'], { exp: now(-10) }, { key: third }), /^token rejected: it has expired$/],
    ['HS256 signed with one of the public keys', subscriberToken(['t'], {}, { key: ec.publicPem }), /^token rejected: its signature is invalid$/]
  ]
  for (const [what, token, message] of cases) {
    const res = await get(stream, { authorization: `Bearer ${token}` })
    t.equal(res.status, 401, what)
    t.match(res.message, message, what)
  }
})

t.test('JWT_REQUIRE_EXP=on refuses tokens without exp, of subscribers and publishers', async t => {
  const { url } = await startInstance(t, { ...AUTH, PUBLISH_AUTH: 'on', JWT_REQUIRE_EXP: 'on', PUBLISH_TOKENS: TOKEN_A })
  const noExp = await get(`${url}/stream?topic=t`, { authorization: `Bearer ${sign({ sse: { subscribe: ['t'] } })}` })
  t.equal(noExp.status, 401)
  t.equal(noExp.message, 'token rejected: it has no expiry (exp), which JWT_REQUIRE_EXP=on requires')
  t.match(noExp.headers.get('www-authenticate'), /error="invalid_token"/)
  const c = await SseClient.open(`${url}/stream?topic=t`, { authorization: `Bearer ${subscriberToken(['t'])}` })
  t.equal(c.status, 200, 'with exp')
  c.close()
  const publisher = await notify(url, { topic: 't', data: 1 }, { authorization: `Bearer ${sign({ sse: { publish: ['t'] } })}` })
  t.equal(publisher.status, 401)
  t.match(publisher.body.message, /no expiry \(exp\)/)
  t.equal((await notify(url, { topic: 't', data: 1 }, { authorization: `Bearer ${TOKEN_A}` })).status, 202, 'static publish tokens are not JWTs: no exp to require')
})

t.test('JWT_CLAIM reads Mercure-style tokens', async t => {
  const { url } = await startInstance(t, { ...AUTH, JWT_CLAIM: 'mercure' })
  const c = await SseClient.open(`${url}/stream?topic=books:1`, { authorization: `Bearer ${sign({ mercure: { subscribe: ['books:*'] } })}` })
  t.equal(c.status, 200)
  c.close()
  t.equal((await get(`${url}/stream?topic=books:1`, { authorization: `Bearer ${subscriberToken(['books:*'])}` })).status, 403, 'the sse claim is not read then')
})

t.test('static tokens: several for rotation, anything else is a 401 that publishes nothing', async t => {
  const { url } = await startInstance(t, { PUBLISH_AUTH: 'on', PUBLISH_TOKENS: `${TOKEN_A}, ${TOKEN_B}` })
  const observer = await openStream(t, `${url}/stream?topic=t`)
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
  const { url } = await startInstance(t, { PUBLISH_AUTH: 'on', JWT_SECRET: SECRET, PUBLISH_TOKENS: TOKEN_A })
  const observer = await openStream(t, `${url}/stream?topic=orders:1&topic=user:42`)
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
  const { url } = await startInstance(t, { PUBLISH_AUTH: 'on', PUBLISH_TOKENS: TOKEN_A })
  const bad = { topic: 'a b', data: 1 }
  t.equal((await notify(url, bad, { authorization: `Bearer ${TOKEN_A}` })).status, 400)
  t.equal((await notify(url, bad)).status, 401)
})

t.test('subscriber auth alone leaves publishing open, and the other way round', async t => {
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_SECRET: SECRET })
  const { url: url2 } = await startInstance(t, { PUBLISH_AUTH: 'on', PUBLISH_TOKENS: TOKEN_A })
  t.equal((await notify(url, { topic: 't', data: 1 })).status, 202)
  const c = await SseClient.open(`${url2}/stream?topic=t`)
  t.equal(c.status, 200)
  c.close()
})

t.test('bad auth settings stop the start with a line naming the setting', async t => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ SUBSCRIBE_AUTH: 'on' }, /SUBSCRIBE_AUTH=on needs JWT_SECRET or JWT_PUBLIC_KEY \(or JWT_PUBLIC_KEY_FILE, JWT_SECRETS, JWT_JWKS_URL\)/],
    [{ PUBLISH_AUTH: 'on' }, /PUBLISH_AUTH=on needs PUBLISH_TOKENS, JWT_SECRET or JWT_PUBLIC_KEY/],
    [{ SUBSCRIBE_AUTH: 'yes' }, /SUBSCRIBE_AUTH/],
    [{ JWT_SECRET: 'short' }, /JWT_SECRET must be at least 32 characters/],
    [{ JWT_PUBLIC_KEY: 'not a key' }, /JWT_PUBLIC_KEY is not a PEM public key/],
    [{ JWT_PUBLIC_KEY: keyPair('ec').publicPem + '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' }, /JWT_PUBLIC_KEY is not a PEM public key \(key 2: /],
    [{ JWT_SECRETS: `${SECRET},short` }, /JWT_SECRETS must be at least 32 characters each/],
    [{ JWT_REQUIRE_EXP: 'yes' }, /JWT_REQUIRE_EXP/],
    [{ JWT_PUBLIC_KEY_FILE: '/nonexistent/key.pem' }, /JWT_PUBLIC_KEY_FILE cannot be read/],
    [{ PUBLISH_TOKENS: 'a-long-enough-token-1,short' }, /PUBLISH_TOKENS must be at least 16 characters/],
    [{ AUTH_COOKIE_NAME: 'bad name;' }, /AUTH_COOKIE_NAME/],
    [{ JWT_CLAIM: '' }, /JWT_CLAIM/]
  ]
  for (const [config, message] of cases) {
    await t.rejects(async () => {
      const app = await buildApp({ env: false, logger: false, config })
      await app.close()
    }, message, JSON.stringify(config))
  }
})
