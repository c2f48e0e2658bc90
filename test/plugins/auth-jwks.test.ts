// Auth against a JWKS endpoint (JWT_JWKS_URL): keys by kid, rotation, refetches that a
// flood of unknown kids cannot multiply, an endpoint that is down or failing.
import t from 'tap'
import { Writable } from 'node:stream'
import { notify, openStream, startInstance } from '../helpers/instance.js'
import { startJwksServer } from '../helpers/jwks.js'
import { keyPair, now, publisherToken, SECRET, sign, subscriberToken, type SignOptions } from '../helpers/jwt.js'
import { until } from '../helpers/wait.js'

const rsaA = keyPair('rsa')
const rsaB = keyPair('rsa')
const ec = keyPair('ec')
const ed = keyPair('ed25519')
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** A stream request's status and error message; a stream that opened is hung up at once. */
async function stream (url: string, token: string, topic = 't'): Promise<{ status: number, message: string }> {
  const res = await fetch(`${url}/stream?topic=${topic}`, { headers: { authorization: `Bearer ${token}` } })
  if (res.headers.get('content-type')?.startsWith('text/event-stream') === true) {
    await res.body?.cancel()
    return { status: res.status, message: '(stream)' }
  }
  return { status: res.status, message: (await res.json()).message }
}

const token = (kid: string | undefined, opts: SignOptions, extra: Record<string, unknown> = {}): string =>
  subscriberToken(['t'], extra, { ...opts, header: kid === undefined ? {} : { kid } })

/** Log lines of an instance, as objects. */
function logSink (): { lines: Array<Record<string, unknown>>, logger: { level: string, stream: Writable } } {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') lines.push(JSON.parse(line))
      done()
    }
  })
  return { lines, logger: { level: 'info', stream } }
}

t.test('tokens of RSA, EC and Ed25519 JWKS keys verify by kid; anything else is a 401 saying why', async t => {
  const jwks = await startJwksServer(t, [rsaA.jwk({ kid: 'a', use: 'sig' }), ec.jwk({ kid: 'e' }), ed.jwk({ kid: 'd' }), { kty: 'oct', kid: 'o', k: 'c2VjcmV0' }])
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', PUBLISH_AUTH: 'on', JWT_JWKS_URL: jwks.url })
  for (const [what, tok] of [
    ['RS256', token('a', { alg: 'RS256', key: rsaA.privateKey })],
    ['PS256', token('a', { alg: 'PS256', key: rsaA.privateKey })],
    ['ES256', token('e', { alg: 'ES256', key: ec.privateKey })],
    ['EdDSA', token('d', { alg: 'EdDSA', key: ed.privateKey })],
    ['no kid: every key for its alg is tried', token(undefined, { alg: 'ES256', key: ec.privateKey })]
  ] as const) {
    t.same(await stream(url, tok), { status: 200, message: '(stream)' }, what)
  }
  const cases: Array<[string, string, RegExp]> = [
    ['signed by another key', token('a', { alg: 'RS256', key: rsaB.privateKey }), /^token rejected: its signature is invalid$/],
    ['an alg that does not fit the key', token('a', { alg: 'ES256', key: ec.privateKey }), /^token rejected: its algorithm is not accepted$/],
    ['HS256 signed with the RSA public key as secret', token('a', { alg: 'HS256', key: rsaA.publicPem }), /^token rejected: its algorithm is not accepted$/],
    ['HS256 with the kid of the oct key the JWKS left out', token('o', { alg: 'HS256', key: 'secret' }), /^token rejected: its algorithm is not accepted$/],
    ['alg none', token('a', { alg: 'none' }), /unsigned \(alg none\)/],
    ['an unknown kid', token('zzz', { alg: 'RS256', key: rsaB.privateKey }), /^token rejected: its key \(kid\) is unknown$/],
    ['no kid, no key for its alg', token(undefined, { alg: 'ES384', key: keyPair('ec384').privateKey }), /its key is unknown/],
    ['expired', token('e', { alg: 'ES256', key: ec.privateKey }, { exp: now(-10) }), /^token rejected: it has expired$/],
    ['not yet valid', token('e', { alg: 'ES256', key: ec.privateKey }, { nbf: now(600) }), /^token rejected: it is not valid yet \(nbf\)$/]
  ]
  for (const [what, tok, message] of cases) {
    const res = await stream(url, tok)
    t.equal(res.status, 401, what)
    t.match(res.message, message, what)
  }
  t.equal((await stream(url, token('e', { alg: 'ES256', key: ec.privateKey }), 'other')).status, 403, 'the claim still says what it may read')
  const published = await notify(url, { topic: 't', data: 1 }, { authorization: `Bearer ${publisherToken(['t'], {}, { alg: 'ES256', key: ec.privateKey, header: { kid: 'e' } })}` })
  t.equal(published.status, 202, 'a publisher JWT of a JWKS key')
})

t.test('aud, iss and JWT_REQUIRE_EXP hold for JWKS tokens as for the others', async t => {
  const jwks = await startJwksServer(t, [ec.jwk({ kid: 'e' })])
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_JWKS_URL: jwks.url, JWT_AUDIENCE: 'svc', JWT_ISSUER: 'https://idp', JWT_REQUIRE_EXP: 'on' })
  const opts = { alg: 'ES256', key: ec.privateKey } as const
  const ok = { aud: 'svc', iss: 'https://idp' }
  t.equal((await stream(url, token('e', opts, ok))).status, 200)
  t.match(await stream(url, token('e', opts, { ...ok, aud: 'x' })), { status: 401, message: 'token rejected: The aud claim value is not allowed' })
  t.match(await stream(url, token('e', opts, { aud: 'svc' })), { status: 401, message: 'token rejected: The iss claim is required' })
  t.match(await stream(url, sign({ ...ok, sse: { subscribe: ['t'] } }, { ...opts, header: { kid: 'e' } })), { status: 401, message: 'token rejected: it has no expiry (exp), which JWT_REQUIRE_EXP=on requires' })
})

t.test('rotation: the JWKS adds B and drops A; B verifies at once, A is refused once the keys are refetched', async t => {
  const jwks = await startJwksServer(t, [rsaA.jwk({ kid: 'A' })])
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_JWKS_URL: jwks.url, JWT_JWKS_MIN_REFRESH_MS: 200 })
  const tokenA = token('A', { alg: 'RS256', key: rsaA.privateKey })
  const tokenB = token('B', { alg: 'RS256', key: rsaB.privateKey })
  const open = await openStream(t, `${url}/stream?topic=t`, { authorization: `Bearer ${tokenA}` })
  t.equal(open.status, 200, 'a stream of key A')
  t.equal(jwks.requests, 1)

  jwks.keys = [rsaB.jwk({ kid: 'B' })]
  await sleep(250)
  t.equal((await stream(url, tokenB)).status, 200, 'kid B is unknown: the JWKS is refetched and B verifies')
  t.equal(jwks.requests, 2)
  t.same(await stream(url, tokenA), { status: 401, message: 'token rejected: its key (kid) is unknown' }, 'A is gone with the refetch')
  await notify(url, { topic: 't', data: 'still here' })
  await open.untilEvents(1)
  t.notOk(open.ended, 'a stream already open goes on until its exp')
})

t.test('a flood of unknown kids refetches the JWKS at most once per JWT_JWKS_MIN_REFRESH_MS', async t => {
  const MIN = 1500
  const jwks = await startJwksServer(t, [ec.jwk({ kid: 'e' })])
  // Fetches are at least MIN apart: in W ms, at most 1 + W / MIN of them (a slow machine may take long).
  const started = Date.now()
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_JWKS_URL: jwks.url, JWT_JWKS_MIN_REFRESH_MS: MIN })
  const good = token('e', { alg: 'ES256', key: ec.privateKey })
  t.equal((await stream(url, good)).status, 200)
  const flood = async (n: number): Promise<number[]> => await Promise.all(Array.from({ length: n }, async (_, i) =>
    (await stream(url, token(`bogus-${Math.random()}-${i}`, { alg: 'ES256', key: ec.privateKey }))).status))

  t.same(new Set(await flood(40)), new Set([401]), 'every bogus kid is refused')
  t.ok(jwks.requests <= 1 + Math.floor((Date.now() - started) / MIN), `${jwks.requests} fetches in ${Date.now() - started} ms`)
  await sleep(MIN + 100)
  const before = jwks.requests
  const floodStart = Date.now()
  await flood(40)
  const extra = jwks.requests - before
  t.ok(extra >= 1 && extra <= 1 + Math.floor((Date.now() - floodStart) / MIN), `a later flood: ${extra} fetch(es)`)
  t.equal((await stream(url, good)).status, 200, 'the real key still verifies')
})

t.test('JWKS down at start: the service starts, logs once, refuses its tokens until it is up', async t => {
  const jwks = await startJwksServer(t, [ec.jwk({ kid: 'e' })], { down: true })
  const { lines, logger } = logSink()
  const { app, url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_JWKS_URL: jwks.url, JWT_JWKS_MIN_REFRESH_MS: 200 }, logger)
  const good = token('e', { alg: 'ES256', key: ec.privateKey })
  t.same(await stream(url, good), { status: 401, message: 'token rejected: its key (kid) is unknown' })
  await sleep(250)
  t.equal((await stream(url, good)).status, 401, 'still down at the next refetch')
  const failures = lines.filter(l => /^JWKS fetch failed/.test(String(l.msg)))
  t.equal(failures.length, 1, 'one warning for the whole run of failures')
  t.match(failures[0], { level: 40, jwks: jwks.url, msg: /tokens of its keys are refused until it succeeds/ })
  t.equal((await app.inject('/health')).statusCode, 200)

  await jwks.up()
  await sleep(250)
  t.equal((await stream(url, good)).status, 200, 'up: the token that named its kid verifies')
  t.ok(lines.some(l => l.msg === 'JWKS fetched again'), 'the recovery is logged')
})

t.test('a failing JWKS keeps the keys fetched before', async t => {
  const jwks = await startJwksServer(t, [ec.jwk({ kid: 'e' })])
  const { lines, logger } = logSink()
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_JWKS_URL: jwks.url, JWT_JWKS_MIN_REFRESH_MS: 200 }, logger)
  const good = token('e', { alg: 'ES256', key: ec.privateKey })
  t.equal((await stream(url, good)).status, 200)
  for (const [what, breakIt] of [
    ['a 500', () => { jwks.status = 500 }],
    ['not a JWKS', () => { jwks.status = 200; jwks.keys = 'nope' as never }],
    ['no usable key', () => { jwks.keys = [{ kty: 'oct', k: 'x' }] }]
  ] as const) {
    breakIt()
    await sleep(250)
    t.equal((await stream(url, token('unknown', { alg: 'ES256', key: ec.privateKey }))).status, 401, `${what}: a refetch`)
    t.equal((await stream(url, good)).status, 200, `${what}: the cached key still verifies`)
  }
  t.ok(jwks.requests >= 4, `refetched on unknown kids and retried in the background (${jwks.requests})`)
  const failures = lines.filter(l => /^JWKS fetch failed/.test(String(l.msg)))
  t.equal(failures.length, 1, 'logged once for the run of failures')
  t.match(failures[0], { reason: 'it answered 500', msg: /keeping the 1 keys fetched before/ })
})

t.test('the JWKS is refetched in the background, and no more once the instance is closed', async t => {
  const jwks = await startJwksServer(t, [rsaA.jwk({ kid: 'A' })])
  const { app, url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_JWKS_URL: jwks.url, JWT_JWKS_REFRESH_MS: 1000, JWT_JWKS_MIN_REFRESH_MS: 60000 })
  jwks.keys = [rsaB.jwk({ kid: 'B' })]
  await until(() => jwks.requests >= 2, 3000, 'a background refetch', 20)
  t.equal((await stream(url, token('B', { alg: 'RS256', key: rsaB.privateKey }))).status, 200, 'B came without any token asking')
  t.equal((await stream(url, token('A', { alg: 'RS256', key: rsaA.privateKey }))).status, 401, 'A left, with no refetch on demand (min refresh)')
  await app.close()
  const after = jwks.requests
  await sleep(1300)
  t.equal(jwks.requests, after, 'the timer went with the instance')
})

t.test('JWKS keys beside static keys: a kid the JWKS does not know may be a static key\'s', async t => {
  const jwks = await startJwksServer(t, [ec.jwk({ kid: 'e' }), rsaB.jwk({ kid: 'b' })])
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_JWKS_URL: jwks.url, JWT_PUBLIC_KEY: rsaA.publicPem, JWT_SECRET: SECRET })
  t.equal((await stream(url, token('e', { alg: 'ES256', key: ec.privateKey }))).status, 200, 'the JWKS key')
  t.equal((await stream(url, token('static', { alg: 'RS256', key: rsaA.privateKey }))).status, 200, 'the PEM key, with a kid')
  t.equal((await stream(url, token(undefined, { alg: 'RS256', key: rsaA.privateKey }))).status, 200, 'the PEM key, without, though a JWKS key fits RS256 too')
  t.equal((await stream(url, token('b', { alg: 'RS256', key: rsaB.privateKey }))).status, 200, 'the JWKS RSA key')
  t.equal((await stream(url, token('e', { alg: 'HS256' }))).status, 200, 'the secret, whatever the kid says')
  t.match(await stream(url, token('nope', { alg: 'RS256', key: keyPair('rsa').privateKey })), { status: 401, message: 'token rejected: its signature is invalid' })
})

t.test('a JWKS URL that is not http(s) stops the start naming it', async t => {
  for (const bad of ['ftp://idp/jwks', 'idp.example/jwks', 'file:///etc/passwd', 'https://[idp/jwks']) {
    await t.rejects(startInstance(t, { SUBSCRIBE_AUTH: 'on', JWT_JWKS_URL: bad }), /JWT_JWKS_URL/, bad)
  }
  await t.rejects(startInstance(t, { JWT_JWKS_MIN_REFRESH_MS: 10 }), /JWT_JWKS_MIN_REFRESH_MS/)
})
