// Tokens made with node:crypto alone, so the tests do not trust the library under test.
import { constants, createHmac, generateKeyPairSync, sign as cryptoSign, type JsonWebKey, type KeyObject } from 'node:crypto'

export const SECRET = 'test-secret-of-at-least-32-characters!'

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

export interface SignOptions {
  alg?: 'HS256' | 'HS384' | 'RS256' | 'RS384' | 'PS256' | 'ES256' | 'ES384' | 'EdDSA' | 'none'
  /** HMAC secret (HS*) or private key (the others). */
  key?: string | KeyObject
  header?: Record<string, unknown>
}

/** A compact JWT; `exp`/`nbf` are up to the caller (seconds, see `now`). */
export function sign (payload: Record<string, unknown>, opts: SignOptions = {}): string {
  const alg = opts.alg ?? 'HS256'
  const input = `${b64({ alg, typ: 'JWT', ...opts.header })}.${b64(payload)}`
  if (alg === 'none') return `${input}.`
  const key = opts.key ?? SECRET
  const hash = `sha${alg.slice(2)}`
  const signature = alg.startsWith('HS')
    ? createHmac(hash, key as string).update(input).digest()
    : alg === 'EdDSA'
      ? cryptoSign(null, Buffer.from(input), key as KeyObject)
      : cryptoSign(hash, Buffer.from(input), {
        key: key as KeyObject,
        dsaEncoding: 'ieee-p1363',
        ...(alg.startsWith('PS') && { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST })
      })
  return `${input}.${signature.toString('base64url')}`
}

/** Seconds since the epoch, `offset` seconds from now. */
export function now (offset = 0): number {
  return Math.floor(Date.now() / 1000) + offset
}

export interface KeyPair {
  privateKey: KeyObject
  publicKey: KeyObject
  publicPem: string
  /** The public key as a JWK, with `kid` and any other members given. */
  jwk: (members?: Record<string, unknown>) => JsonWebKey
}

export function keyPair (type: 'rsa' | 'ec' | 'ec384' | 'ed25519'): KeyPair {
  const { privateKey, publicKey } = type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : type === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: type === 'ec' ? 'P-256' : 'P-384' })
  return {
    privateKey,
    publicKey,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    jwk: (members = {}) => ({ ...publicKey.export({ format: 'jwk' }), ...members })
  }
}

/** A subscriber token for `topics`, valid for an hour unless `extra` says otherwise. */
export function subscriberToken (topics: string[], extra: Record<string, unknown> = {}, opts: SignOptions = {}): string {
  return sign({ sse: { subscribe: topics }, exp: now(3600), ...extra }, opts)
}

export function publisherToken (topics: string[], extra: Record<string, unknown> = {}, opts: SignOptions = {}): string {
  return sign({ sse: { publish: topics }, exp: now(3600), ...extra }, opts)
}
