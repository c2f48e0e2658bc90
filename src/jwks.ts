// JWTs checked with node:crypto alone against keys of a JWKS: the keys a JWKS document
// holds, which algorithms each may verify, signatures and the time, aud and iss claims.
// Fetching and caching the document is the auth plugin's job.
import { constants, createPublicKey, verify, type JsonWebKey, type KeyObject } from 'node:crypto'

/** Why a token is refused, in the caller's terms ("token rejected: <reason>"). */
export class TokenRejection extends Error {}

/** A verification key and the `alg`s a token it signed may name. */
export interface VerifyKey {
  kid: string | null
  key: KeyObject
  algorithms: readonly string[]
}

/** What a token must also satisfy besides its signature. */
export interface ClaimRules {
  clockToleranceMs: number
  /** Required aud ('' = not checked). */
  audience: string
  /** Required iss ('' = not checked). */
  issuer: string
}

export interface DecodedJwt {
  header: Record<string, unknown>
  alg: string
  kid: string | null
  /** What the signature covers: `header.payload` as sent. */
  input: string
  payloadPart: string
  signature: Buffer
}

const RSA_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
const CURVE_ALGORITHMS: Record<string, string> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }
const HASHES: Record<string, string> = { 256: 'sha256', 384: 'sha384', 512: 'sha512' }
const BASE64URL = /^[A-Za-z0-9_-]*$/
// Below this an RSA key is factorable by a determined attacker.
const MIN_RSA_BITS = 2048

/** The asymmetric algorithms a public key can verify; [] for any other key. */
export function algorithmsFor (key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa': return (key.asymmetricKeyDetails?.modulusLength ?? 0) >= MIN_RSA_BITS ? [...RSA_ALGORITHMS] : []
    case 'rsa-pss': return (key.asymmetricKeyDetails?.modulusLength ?? 0) >= MIN_RSA_BITS ? RSA_ALGORITHMS.filter(a => a.startsWith('PS')) : []
    case 'ec': {
      const alg = CURVE_ALGORITHMS[key.asymmetricKeyDetails?.namedCurve ?? '']
      return alg === undefined ? [] : [alg]
    }
    case 'ed25519': return ['EdDSA']
    default: return []
  }
}

/** One JWK as a verification key; throws why it cannot be one. */
export function keyFromJwk (jwk: unknown): VerifyKey {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw new Error('not an object')
  const { kty, crv, use, alg, kid, key_ops: ops } = jwk as Record<string, unknown>
  if (use !== undefined && use !== 'sig') throw new Error(`its use is ${JSON.stringify(use)}, not "sig"`)
  if (ops !== undefined && !(Array.isArray(ops) && ops.includes('verify'))) throw new Error('its key_ops do not include "verify"')
  if (kty !== 'RSA' && kty !== 'EC' && kty !== 'OKP') throw new Error(`kty ${JSON.stringify(kty)} is not accepted (RSA, EC or OKP)`)
  if (kty === 'OKP' && crv !== 'Ed25519') throw new Error(`crv ${JSON.stringify(crv)} is not accepted (Ed25519)`)
  let key: KeyObject
  try {
    key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' })
  } catch (err) {
    throw new Error(`it is not a valid ${kty} key (${(err as Error).message})`)
  }
  const algorithms = algorithmsFor(key)
  if (algorithms.length === 0) throw new Error(kty === 'RSA' ? `an RSA key needs at least ${MIN_RSA_BITS} bits` : `crv ${JSON.stringify(crv)} is not accepted`)
  if (alg !== undefined && !algorithms.includes(alg as string)) throw new Error(`its alg ${JSON.stringify(alg)} does not fit a ${kty} key${crv === undefined ? '' : ` on ${String(crv)}`}`)
  return { kid: typeof kid === 'string' ? kid : null, key, algorithms: alg === undefined ? algorithms : [alg as string] }
}

/** The usable keys of a JWKS document, and why the others were left out. */
export function parseJwks (body: unknown): { keys: VerifyKey[], skipped: string[] } {
  const list = (body as { keys?: unknown } | null)?.keys
  if (!Array.isArray(list)) throw new Error('it is not a JWKS (no "keys" array)')
  const keys: VerifyKey[] = []
  const skipped: string[] = []
  list.forEach((jwk, i) => {
    try {
      keys.push(keyFromJwk(jwk))
    } catch (err) {
      const kid = (jwk as { kid?: unknown } | null)?.kid
      skipped.push(`keys[${i}]${typeof kid === 'string' ? ` (kid ${JSON.stringify(kid)})` : ''}: ${(err as Error).message}`)
    }
  })
  return { keys, skipped }
}

/** A compact JWS's parts; null when it is not one (three base64url parts, a header with an alg). */
export function decodeJwt (token: string): DecodedJwt | null {
  const parts = token.split('.')
  if (parts.length !== 3 || !parts.every(p => BASE64URL.test(p)) || parts[0] === '') return null
  let header: unknown
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'))
  } catch {
    return null
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return null
  const { alg, kid } = header as Record<string, unknown>
  if (typeof alg !== 'string') return null
  return {
    header: header as Record<string, unknown>,
    alg,
    kid: typeof kid === 'string' ? kid : null,
    input: `${parts[0]}.${parts[1]}`,
    payloadPart: parts[1],
    signature: Buffer.from(parts[2], 'base64url')
  }
}

/** Whether `signature` over `input` is `key`'s under `alg` (RS*, PS*, ES* in IEEE P1363 form, EdDSA). */
export function verifySignature (alg: string, key: KeyObject, input: string, signature: Buffer): boolean {
  const data = Buffer.from(input)
  try {
    if (alg === 'EdDSA') return verify(null, data, key, signature)
    const hash = HASHES[alg.slice(2)]
    if (hash === undefined) return false
    switch (alg.slice(0, 2)) {
      case 'RS': return verify(hash, data, key, signature)
      case 'PS': return verify(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature)
      case 'ES': return verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, signature)
      default: return false
    }
  } catch {
    return false
  }
}

/** null when the claims hold at `now` (ms), else the reason, worded as for tokens of the static keys. */
export function claimsRefusal (payload: Record<string, unknown>, rules: ClaimRules, now: number): string | null {
  if (rules.audience !== '' && !('aud' in payload)) return 'The aud claim is required'
  if (rules.issuer !== '' && !('iss' in payload)) return 'The iss claim is required'
  for (const claim of ['nbf', 'exp'] as const) {
    if (!(claim in payload)) continue
    const value = payload[claim]
    if (typeof value !== 'number') return `The ${claim} claim must be a number`
    if (claim === 'nbf' && now < value * 1000 - rules.clockToleranceMs) return 'it is not valid yet (nbf)'
    if (claim === 'exp' && now > value * 1000 + rules.clockToleranceMs) return 'it has expired'
  }
  if (rules.audience !== '') {
    const aud = payload.aud
    const values = Array.isArray(aud) ? aud : [aud]
    if (!values.every(v => typeof v === 'string')) return 'The aud claim must be a string or an array of strings'
    if (!values.includes(rules.audience)) return Array.isArray(aud) ? 'None of aud claim values are allowed' : 'The aud claim value is not allowed'
  }
  if (rules.issuer !== '') {
    if (typeof payload.iss !== 'string') return 'The iss claim must be a string'
    if (payload.iss !== rules.issuer) return 'The iss claim value is not allowed'
  }
  return null
}

/** The payload of a token `key` signed whose claims hold at `now`; throws a TokenRejection otherwise. */
export function verifyWithKey (jwt: DecodedJwt, key: VerifyKey, rules: ClaimRules, now: number): Record<string, unknown> {
  if (!key.algorithms.includes(jwt.alg)) throw new TokenRejection('its algorithm is not accepted')
  if (jwt.signature.length === 0) throw new TokenRejection('it is unsigned')
  if (!verifySignature(jwt.alg, key.key, jwt.input, jwt.signature)) throw new TokenRejection('its signature is invalid')
  // No extension is understood, so none may be critical.
  if (jwt.header.crit !== undefined) throw new TokenRejection('it cannot be verified')
  let payload: unknown
  try {
    payload = JSON.parse(Buffer.from(jwt.payloadPart, 'base64url').toString('utf8'))
  } catch {
    throw new TokenRejection('it is malformed')
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw new TokenRejection('it is malformed')
  const refusal = claimsRefusal(payload as Record<string, unknown>, rules, now)
  if (refusal !== null) throw new TokenRejection(refusal)
  return payload as Record<string, unknown>
}

// A key of the wrong type says least, a bad signature more; anything else was said by
// the key that verified the signature (an expired token, a wrong aud).
const RANK: Record<string, number> = { 'its algorithm is not accepted': 0, 'its signature is invalid': 1 }

/** The payload of the first attempt that verifies; else throws the most telling TokenRejection. */
export function firstVerified (attempts: Array<() => Record<string, unknown>>): Record<string, unknown> {
  let best = new TokenRejection('its algorithm is not accepted')
  for (const attempt of attempts) {
    try {
      return attempt()
    } catch (err) {
      if (!(err instanceof TokenRejection)) throw err
      if ((RANK[err.message] ?? 2) > (RANK[best.message] ?? 2)) best = err
    }
  }
  throw best
}
