// JWKS keys and JWTs checked with node:crypto: keys, algorithms, signatures, claims.
import t from 'tap'
import { createSecretKey, generateKeyPairSync, sign as cryptoSign } from 'node:crypto'
import { algorithmsFor, claimsRefusal, decodeJwt, firstVerified, keyFromJwk, parseJwks, TokenRejection, verifySignature, verifyWithKey, type ClaimRules } from '../../src/jwks.js'
import { keyPair, now, sign } from '../helpers/jwt.js'

const rsa = keyPair('rsa')
const ec = keyPair('ec')
const ec384 = keyPair('ec384')
const ed = keyPair('ed25519')
const RULES: ClaimRules = { clockToleranceMs: 0, audience: '', issuer: '' }

function reason (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    return (err as Error).message
  }
  return '(accepted)'
}

t.test('algorithmsFor: what each key type may verify, nothing for the others', async t => {
  t.same(algorithmsFor(rsa.publicKey), ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'])
  t.same(algorithmsFor(ec.publicKey), ['ES256'])
  t.same(algorithmsFor(ec384.publicKey), ['ES384'])
  t.same(algorithmsFor(generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey), ['ES512'])
  t.same(algorithmsFor(ed.publicKey), ['EdDSA'])
  t.same(algorithmsFor(generateKeyPairSync('rsa-pss', { modulusLength: 2048 }).publicKey), ['PS256', 'PS384', 'PS512'])
  t.same(algorithmsFor(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey), [], 'an RSA key under 2048 bits')
  t.same(algorithmsFor(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey), [], 'a curve JWS has no alg for')
  t.same(algorithmsFor(createSecretKey(Buffer.alloc(32))), [], 'a secret key')
})

t.test('keyFromJwk: RSA, EC and Ed25519 keys with their kid; alg narrows them', async t => {
  const k = keyFromJwk(rsa.jwk({ kid: 'a', use: 'sig' }))
  t.equal(k.kid, 'a')
  t.equal(k.key.asymmetricKeyType, 'rsa')
  t.same(keyFromJwk(rsa.jwk({ kid: 'a', alg: 'PS256' })).algorithms, ['PS256'])
  t.same(keyFromJwk(ec.jwk({ kid: 'e' })).algorithms, ['ES256'])
  t.same(keyFromJwk(ec384.jwk()).algorithms, ['ES384'])
  t.equal(keyFromJwk(ec384.jwk()).kid, null, 'no kid')
  t.same(keyFromJwk(ed.jwk({ kid: 'd', key_ops: ['verify'] })).algorithms, ['EdDSA'])
  t.ok(keyFromJwk(ec.privateKey.export({ format: 'jwk' })).key.type === 'public', 'a private JWK gives its public key')
})

t.test('keyFromJwk: every key it cannot use is refused saying why', async t => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['not an object', 'x', /not an object/],
    ['an array', [], /not an object/],
    ['an encryption key', rsa.jwk({ use: 'enc' }), /use is "enc", not "sig"/],
    ['key_ops without verify', rsa.jwk({ key_ops: ['encrypt'] }), /key_ops/],
    ['a symmetric key', { kty: 'oct', k: 'c2VjcmV0' }, /kty "oct" is not accepted/],
    ['no kty', {}, /kty undefined is not accepted/],
    ['X25519', { kty: 'OKP', crv: 'X25519', x: 'AAAA' }, /crv "X25519"/],
    ['alg of another key type', rsa.jwk({ alg: 'ES256' }), /alg "ES256" does not fit a RSA key/],
    ['HS256 on an RSA key', rsa.jwk({ alg: 'HS256' }), /alg "HS256" does not fit/],
    ['ES384 on P-256', ec.jwk({ alg: 'ES384' }), /alg "ES384" does not fit a EC key on P-256/],
    ['alg none', ec.jwk({ alg: 'none' }), /alg "none" does not fit/],
    ['a broken key', { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' }, /not a valid EC key/],
    ['a short RSA key', generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' }), /at least 2048 bits/],
    ['secp256k1', generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ format: 'jwk' }), /crv "secp256k1"/]
  ]
  for (const [what, jwk, message] of cases) t.match(reason(() => keyFromJwk(jwk)), message, what)
})

t.test('parseJwks: the usable keys, and why the others were left out', async t => {
  const { keys, skipped } = parseJwks({ keys: [rsa.jwk({ kid: 'r' }), { kty: 'oct', kid: 'o', k: 'x' }, ec.jwk({ kid: 'e' }), null] })
  t.same(keys.map(k => k.kid), ['r', 'e'])
  t.same(skipped, ['keys[1] (kid "o"): kty "oct" is not accepted (RSA, EC or OKP)', 'keys[3]: not an object'])
  t.same(parseJwks({ keys: [] }).keys, [])
  for (const body of [null, 'x', {}, { keys: {} }]) t.throws(() => parseJwks(body), /not a JWKS/, JSON.stringify(body))
})

t.test('decodeJwt: the parts of a compact JWS, null for anything else', async t => {
  const token = sign({ a: 1 }, { alg: 'ES256', key: ec.privateKey, header: { kid: 'k1' } })
  const jwt = decodeJwt(token)!
  t.equal(jwt.alg, 'ES256')
  t.equal(jwt.kid, 'k1')
  t.equal(jwt.input, token.split('.').slice(0, 2).join('.'))
  t.equal(jwt.signature.length, 64, 'ES256 in IEEE P1363 form')
  t.equal(decodeJwt(sign({}, { header: { kid: 7 } }))!.kid, null, 'a kid that is not a string is none')
  const header = (h: unknown): string => Buffer.from(JSON.stringify(h)).toString('base64url')
  for (const bad of ['', 'a.b', 'a.b.c.d', '!!!.e30.sig', `${header({ alg: 'HS256' })}.e+0.sig`, `${header({ typ: 'JWT' })}.e30.x`, `${header(['alg'])}.e30.x`, `${header(null)}.e30.x`, `${header({ alg: 1 })}.e30.x`, '.e30.x']) {
    t.equal(decodeJwt(bad), null, JSON.stringify(bad))
  }
})

t.test('verifySignature: RS*, PS*, ES*, EdDSA, each only with its own key and hash', async t => {
  const check = (token: string, key = rsa.publicKey): boolean => {
    const jwt = decodeJwt(token)!
    return verifySignature(jwt.alg, key, jwt.input, jwt.signature)
  }
  t.ok(check(sign({}, { alg: 'RS256', key: rsa.privateKey })))
  t.ok(check(sign({}, { alg: 'RS384', key: rsa.privateKey })))
  t.ok(check(sign({}, { alg: 'PS256', key: rsa.privateKey })))
  t.ok(check(sign({}, { alg: 'ES256', key: ec.privateKey }), ec.publicKey))
  t.ok(check(sign({}, { alg: 'ES384', key: ec384.privateKey }), ec384.publicKey))
  t.ok(check(sign({}, { alg: 'EdDSA', key: ed.privateKey }), ed.publicKey))
  t.notOk(check(sign({}, { alg: 'RS256', key: keyPair('rsa').privateKey })), 'another RSA key')
  t.notOk(check(sign({}, { alg: 'RS256', key: rsa.privateKey, header: { alg: 'PS256' } })), 'PKCS#1 v1.5 taken as PSS')
  t.notOk(check(sign({}, { alg: 'RS256', key: rsa.privateKey, header: { alg: 'RS384' } })), 'another hash')
  t.notOk(check(sign({}, { alg: 'ES256', key: ec.privateKey }), rsa.publicKey), 'an EC signature against an RSA key')
  t.notOk(check(sign({}, { alg: 'HS256', key: rsa.publicPem })), 'HS256 is never checked with a public key')
  t.notOk(verifySignature('ES256', ec.publicKey, 'a.b', Buffer.alloc(3)), 'a signature of the wrong length')
  t.notOk(verifySignature('XX256', ec.publicKey, 'a.b', Buffer.alloc(64)), 'an unknown algorithm')
  t.notOk(verifySignature('RS999', rsa.publicKey, 'a.b', Buffer.alloc(64)), 'an unknown hash')
})

t.test('claimsRefusal: exp, nbf (with tolerance), aud and iss, worded as for the static keys', async t => {
  const at = now() * 1000
  const rules = { clockToleranceMs: 0, audience: 'svc', issuer: 'https://idp' }
  const ok = { aud: 'svc', iss: 'https://idp' }
  t.equal(claimsRefusal({}, RULES, at), null, 'nothing required')
  t.equal(claimsRefusal({ ...ok, exp: now(10), nbf: now(-10) }, rules, at), null)
  t.equal(claimsRefusal({ ...ok, aud: ['x', 'svc'] }, rules, at), null, 'aud as an array holding ours')
  t.equal(claimsRefusal({ exp: now(-1) }, RULES, at), 'it has expired')
  t.equal(claimsRefusal({ exp: now(-1) }, { ...RULES, clockToleranceMs: 2000 }, at), null, 'within the tolerance')
  t.equal(claimsRefusal({ exp: now() }, RULES, at), null, 'exp is the last valid second')
  t.equal(claimsRefusal({ nbf: now(5) }, RULES, at), 'it is not valid yet (nbf)')
  t.equal(claimsRefusal({ nbf: now(1) }, { ...RULES, clockToleranceMs: 2000 }, at), null)
  t.equal(claimsRefusal({ exp: '1' }, RULES, at), 'The exp claim must be a number')
  t.equal(claimsRefusal({ nbf: null }, RULES, at), 'The nbf claim must be a number')
  t.equal(claimsRefusal({ iss: 'https://idp' }, rules, at), 'The aud claim is required')
  t.equal(claimsRefusal({ aud: 'svc' }, rules, at), 'The iss claim is required')
  t.equal(claimsRefusal({ ...ok, aud: 'other' }, rules, at), 'The aud claim value is not allowed')
  t.equal(claimsRefusal({ ...ok, aud: ['a', 'b'] }, rules, at), 'None of aud claim values are allowed')
  t.equal(claimsRefusal({ ...ok, aud: ['svc', 1] }, rules, at), 'The aud claim must be a string or an array of strings')
  t.equal(claimsRefusal({ ...ok, iss: 'https://evil' }, rules, at), 'The iss claim value is not allowed')
  t.equal(claimsRefusal({ ...ok, iss: ['https://idp'] }, rules, at), 'The iss claim must be a string')
})

t.test('verifyWithKey: the payload, or why not', async t => {
  const key = keyFromJwk(ec.jwk({ kid: 'e' }))
  const at = Date.now()
  const verify = (token: string, k = key, rules = RULES): string => reason(() => verifyWithKey(decodeJwt(token)!, k, rules, at))
  const good = sign({ sub: 'x', exp: now(60) }, { alg: 'ES256', key: ec.privateKey })
  t.same(verifyWithKey(decodeJwt(good)!, key, RULES, at), { sub: 'x', exp: now(60) })
  t.equal(verify(sign({}, { alg: 'RS256', key: rsa.privateKey })), 'its algorithm is not accepted', 'an alg the key is not for')
  t.equal(verify(sign({}, { alg: 'HS256', key: ec.publicPem })), 'its algorithm is not accepted', 'HS256 with the public key as secret')
  t.equal(verify(`${good.split('.').slice(0, 2).join('.')}.`), 'it is unsigned')
  t.equal(verify(sign({}, { alg: 'ES256', key: keyPair('ec').privateKey })), 'its signature is invalid')
  const tampered = good.split('.')
  tampered[1] = Buffer.from('{"sub":"admin"}').toString('base64url')
  t.equal(verify(tampered.join('.')), 'its signature is invalid', 'payload changed')
  t.equal(verify(sign({}, { alg: 'ES256', key: ec.privateKey, header: { crit: ['b64'], b64: false } })), 'it cannot be verified', 'a crit header')
  t.equal(verify(sign({ exp: now(-5) }, { alg: 'ES256', key: ec.privateKey })), 'it has expired')
  t.equal(verify(sign({ aud: 'x' }, { alg: 'ES256', key: ec.privateKey }), key, { ...RULES, audience: 'svc' }), 'The aud claim value is not allowed')
  // A payload that is not a JSON object, signed all the same.
  for (const body of ['[1]', 'not json', 'null']) {
    const i = `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.${Buffer.from(body).toString('base64url')}`
    const sig = cryptoSign('sha256', Buffer.from(i), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')
    t.equal(verify(`${i}.${sig}`), 'it is malformed', `payload ${body}`)
  }
})

t.test('firstVerified: the first payload, else the most telling refusal', async t => {
  const refuse = (why: string) => () => { throw new TokenRejection(why) }
  t.same(firstVerified([refuse('its signature is invalid'), () => ({ a: 1 })]), { a: 1 })
  t.throws(() => firstVerified([]), { message: 'its algorithm is not accepted' }, 'no key at all')
  t.throws(() => firstVerified([refuse('its algorithm is not accepted'), refuse('its signature is invalid')]), { message: 'its signature is invalid' })
  t.throws(() => firstVerified([refuse('it has expired'), refuse('its signature is invalid')]), { message: 'it has expired' }, 'the key that verified the signature says why')
  t.throws(() => firstVerified([() => { throw new Error('bug') }]), { message: 'bug' }, 'other errors pass through')
})
