// Tokens made with node:crypto alone, so the tests do not trust the library under test.
import { createHmac, createSign, generateKeyPairSync, type KeyObject } from 'node:crypto'

export const SECRET = 'test-secret-of-at-least-32-characters!'

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

export interface SignOptions {
  alg?: 'HS256' | 'RS256' | 'ES256' | 'none'
  /** HMAC secret (HS256) or private key (RS256, ES256). */
  key?: string | KeyObject
  header?: Record<string, unknown>
}

/** A compact JWT; `exp`/`nbf` are up to the caller (seconds, see `now`). */
export function sign (payload: Record<string, unknown>, opts: SignOptions = {}): string {
  const alg = opts.alg ?? 'HS256'
  const input = `${b64({ alg, typ: 'JWT', ...opts.header })}.${b64(payload)}`
  if (alg === 'none') return `${input}.`
  const key = opts.key ?? SECRET
  let signature: Buffer
  if (alg === 'HS256') {
    signature = createHmac('sha256', key as string).update(input).digest()
  } else {
    signature = createSign('SHA256').update(input).sign({ key: key as KeyObject, dsaEncoding: 'ieee-p1363' })
  }
  return `${input}.${signature.toString('base64url')}`
}

/** Seconds since the epoch, `offset` seconds from now. */
export function now (offset = 0): number {
  return Math.floor(Date.now() / 1000) + offset
}

export function keyPair (type: 'rsa' | 'ec'): { privateKey: KeyObject, publicPem: string } {
  const { privateKey, publicKey } = type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string }
}

/** A subscriber token for `topics`, valid for an hour unless `extra` says otherwise. */
export function subscriberToken (topics: string[], extra: Record<string, unknown> = {}, opts: SignOptions = {}): string {
  return sign({ sse: { subscribe: topics }, exp: now(3600), ...extra }, opts)
}

export function publisherToken (topics: string[], extra: Record<string, unknown> = {}, opts: SignOptions = {}): string {
  return sign({ sse: { publish: topics }, exp: now(3600), ...extra }, opts)
}
