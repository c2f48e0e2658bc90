// Who may read and publish what. Off by default (anyone may do anything); when on, a
// stream needs a JWT listing the topics it may read, a publisher a static token or a
// JWT listing the topics it may publish to. The routes ask `checkTopics` after parsing.
import fastifyCookie from '@fastify/cookie'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { createHash, createPublicKey, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Type } from 'typebox'
import { EVERY, NONE, OPEN, refusedTopics, TopicPatterns, type Access, type Action } from '../src/access.js'
import { splitList, type Config } from '../src/config.js'
import { decodeJwt, firstVerified, parseJwks, TokenRejection, verifyWithKey, type ClaimRules, type DecodedJwt, type VerifyKey } from '../src/jwks.js'
import { documentAnswer, errorBody } from '../src/refusal.js'
import { redactUrl } from './redis.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** null when the request may do `action` on every topic (null topics = a broadcast), else why not. */
    checkTopics: (request: FastifyRequest, action: Action, topics: string[] | null) => string | null
  }
  interface FastifyRequest {
    /** Set by the auth hook; null where that action is open (no hook runs). */
    access: Access | null
  }
  interface FastifyContextConfig {
    /** The route needs a credential for this action when its auth setting is on. */
    auth?: Action
  }
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    // One per static key: hmac0, hmac1, ... and pk0, pk1, ...
    namespaces: `hmac${number}` | `pk${number}`
  }
}

type SecurityScheme = { type: 'http', scheme: 'bearer', description: string } | { type: 'apiKey', in: 'cookie' | 'query', name: string, description: string }

/** The ways a credential may come, as OpenAPI security schemes (plugins/docs.ts lists them). */
export function securitySchemes (cfg: Config): Record<string, SecurityScheme> {
  const subscribeOn = cfg.SUBSCRIBE_AUTH === 'on'
  const publishOn = cfg.PUBLISH_AUTH === 'on'
  return {
    ...((subscribeOn || publishOn) && {
      bearer: { type: 'http' as const, scheme: 'bearer' as const, description: `A JWT whose ${cfg.JWT_CLAIM} claim lists the topics it may read or publish to` + (publishOn ? ' (POST /notify: or one of PUBLISH_TOKENS)' : '') }
    }),
    ...(subscribeOn && { cookie: { type: 'apiKey' as const, in: 'cookie' as const, name: cfg.AUTH_COOKIE_NAME, description: 'GET /stream: the JWT in a cookie (EventSource withCredentials)' } }),
    ...(subscribeOn && cfg.SUBSCRIBE_TOKEN_QUERY === 'on' && { query: { type: 'apiKey' as const, in: 'query' as const, name: 'token', description: 'GET /stream: the JWT as ?token= (EventSource cannot set headers; URLs end up in logs)' } })
  }
}

class AuthError extends Error {
  readonly statusCode: number
  readonly wwwAuthenticate: string | null
  constructor (statusCode: number, message: string, invalidToken = false) {
    super(message)
    this.statusCode = statusCode
    this.wwwAuthenticate = statusCode !== 401
      ? null
      : invalidToken
        ? `Bearer realm="sse-fanout", error="invalid_token", error_description="${message.replace(/["\\]/g, '')}"`
        : 'Bearer realm="sse-fanout"'
  }
}

/** fast-jwt's error codes in the caller's terms; the token itself is never echoed. */
const JWT_REASONS: Record<string, string> = {
  FAST_JWT_EXPIRED: 'it has expired',
  FAST_JWT_INACTIVE: 'it is not valid yet (nbf)',
  FAST_JWT_INVALID_SIGNATURE: 'its signature is invalid',
  FAST_JWT_MISSING_SIGNATURE: 'it is unsigned',
  FAST_JWT_INVALID_ALGORITHM: 'its algorithm is not accepted',
  FAST_JWT_MALFORMED: 'it is malformed',
  FAST_JWT_INVALID_TYPE: 'it is malformed',
  FAST_JWT_INVALID_PAYLOAD: 'it is malformed'
}

/** Constant-time membership test: every configured token is compared, equal lengths by hashing. */
class StaticTokens {
  private readonly digests: Buffer[]
  constructor (tokens: string[]) {
    this.digests = tokens.map(t => createHash('sha256').update(t).digest())
  }

  get size (): number {
    return this.digests.length
  }

  has (token: string): boolean {
    const digest = createHash('sha256').update(token).digest()
    let found = false
    for (const d of this.digests) found = timingSafeEqual(d, digest) || found
    return found
  }
}

/** The PEM blocks of JWT_PUBLIC_KEY or its file, each checked to be a public key. */
function readPublicKeys (pem: string, file: string): string[] {
  if (pem !== '' && file !== '') throw new Error('set JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE, not both')
  const setting = file !== '' ? 'JWT_PUBLIC_KEY_FILE' : 'JWT_PUBLIC_KEY'
  let text = pem.replace(/\\n/g, '\n')
  if (file !== '') {
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new Error(`JWT_PUBLIC_KEY_FILE cannot be read: ${(err as Error).message}`)
    }
  }
  if (text.trim() === '') return []
  const blocks = text.match(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g) ?? [text]
  return blocks.map((block, i) => {
    try {
      createPublicKey(block)
    } catch (err) {
      throw new Error(`${setting} is not a PEM public key (${blocks.length > 1 ? `key ${i + 1}: ` : ''}${(err as Error).message})`)
    }
    return block
  })
}

function patternList (value: unknown, where: string): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || !value.every(x => typeof x === 'string')) {
    throw new AuthError(401, `token rejected: its claim ${where} must be an array of topic patterns`, true)
  }
  return value
}

/** The bearer token of an Authorization header; undefined without the header. */
function bearer (request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  if (header === undefined) return undefined
  const match = /^Bearer +(\S+) *$/i.exec(header)
  if (match === null) throw new AuthError(401, 'the Authorization header must be "Bearer <token>"')
  return match[1]
}

// Longest a JWKS fetch may take; a request waiting on it waits at most this long.
const JWKS_FETCH_TIMEOUT_MS = 5000
const JWKS_MAX_BYTES = 1 << 20

interface JwksSource {
  /** The keys named `kid` (refetching the JWKS first when none is, at most once per JWT_JWKS_MIN_REFRESH_MS), or all keys for `alg` when the token names none. */
  keys: (kid: string | null, alg: string) => Promise<VerifyKey[]>
}

/**
 * The keys of JWT_JWKS_URL, fetched once ready, refetched every JWT_JWKS_REFRESH_MS and
 * when a token names an unknown kid. A failed fetch keeps the keys it had, logs once per
 * run of failures and is retried; the service starts whether the JWKS answers or not.
 */
function jwksSource (fastify: FastifyInstance, url: string, refreshMs: number, minRefreshMs: number): JwksSource {
  let keys: VerifyKey[] = []
  let lastFetch = -Infinity
  let pending: Promise<void> | null = null
  let failing = false
  let closed = false
  let timer: NodeJS.Timeout | undefined
  const abort = new AbortController()
  const where = { jwks: redactUrl(url) }

  async function fetchKeys (): Promise<void> {
    lastFetch = Date.now()
    try {
      const res = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.any([abort.signal, AbortSignal.timeout(JWKS_FETCH_TIMEOUT_MS)]) })
      if (!res.ok) throw new Error(`it answered ${res.status}`)
      const text = await res.text()
      if (text.length > JWKS_MAX_BYTES) throw new Error(`it is over ${JWKS_MAX_BYTES} bytes`)
      let body: unknown
      try { body = JSON.parse(text) } catch { throw new Error('it is not JSON') }
      const { keys: fetched, skipped } = parseJwks(body)
      if (fetched.length === 0) throw new Error(`it holds no usable key${skipped.length > 0 ? ` (${skipped.join('; ')})` : ''}`)
      const before = keys.map(k => k.kid).join()
      keys = fetched
      if (failing || before !== keys.map(k => k.kid).join()) {
        fastify.log.info({ ...where, kids: keys.map(k => k.kid), skipped }, failing ? 'JWKS fetched again' : 'JWKS keys loaded')
      }
      failing = false
    } catch (err) {
      if (closed) return
      if (!failing) {
        fastify.log.warn({ ...where, reason: (err as Error).message },
          keys.length > 0 ? `JWKS fetch failed: keeping the ${keys.length} keys fetched before, retrying` : 'JWKS fetch failed: tokens of its keys are refused until it succeeds, retrying')
      }
      failing = true
    }
  }

  function refresh (): Promise<void> {
    pending ??= fetchKeys().finally(() => {
      pending = null
      if (closed) return
      clearTimeout(timer)
      // After a failure, retry sooner than the regular refresh.
      timer = setTimeout(refresh, failing ? Math.min(minRefreshMs, refreshMs) : refreshMs).unref()
    })
    return pending
  }

  // Not awaited: the start does not wait for the JWKS (fetchKeys never rejects).
  fastify.addHook('onReady', async () => { refresh().catch(() => {}) })
  fastify.addHook('onClose', async () => {
    closed = true
    clearTimeout(timer)
    abort.abort()
  })

  return {
    async keys (kid, alg) {
      if (kid === null) return keys.filter(k => k.algorithms.includes(alg))
      if (!keys.some(k => k.kid === kid)) {
        if (pending !== null) await pending
        else if (Date.now() - lastFetch >= minRefreshMs) await refresh()
      }
      return keys.filter(k => k.kid === kid)
    }
  }
}

/** fast-jwt's error as a TokenRejection, worded as the JWKS keys' are. */
function rejection (err: unknown): TokenRejection {
  const code = (err as { code?: string }).code ?? ''
  return new TokenRejection(JWT_REASONS[code] ??
    (code.startsWith('FAST_JWT_') && /claim/i.test((err as Error).message) ? (err as Error).message.replace(/\.$/, '') : 'it cannot be verified'))
}

async function auth (fastify: FastifyInstance): Promise<void> {
  const cfg = fastify.config
  const subscribeOn = cfg.SUBSCRIBE_AUTH === 'on'
  const publishOn = cfg.PUBLISH_AUTH === 'on'
  const claim = cfg.JWT_CLAIM
  if (cfg.JWT_SECRET !== '' && cfg.JWT_SECRET.length < 32) throw new Error('JWT_SECRET must be at least 32 characters')
  const moreSecrets = splitList(cfg.JWT_SECRETS)
  if (moreSecrets.some(s => s.length < 32)) throw new Error('JWT_SECRETS must be at least 32 characters each')
  const secrets = [...(cfg.JWT_SECRET !== '' ? [cfg.JWT_SECRET] : []), ...moreSecrets]
  const publicKeys = readPublicKeys(cfg.JWT_PUBLIC_KEY, cfg.JWT_PUBLIC_KEY_FILE)
  const tokenList = splitList(cfg.PUBLISH_TOKENS)
  if (tokenList.some(t => t.length < 16 || /\s/.test(t))) throw new Error('PUBLISH_TOKENS must be at least 16 characters each, without spaces')
  const staticTokens = new StaticTokens(tokenList)
  if (cfg.JWT_JWKS_URL !== '' && !URL.canParse(cfg.JWT_JWKS_URL)) throw new Error(`JWT_JWKS_URL is not a URL: ${cfg.JWT_JWKS_URL}`)
  const jwtOn = secrets.length > 0 || publicKeys.length > 0 || cfg.JWT_JWKS_URL !== ''
  const keySettings = 'JWT_SECRET or JWT_PUBLIC_KEY (or JWT_PUBLIC_KEY_FILE, JWT_SECRETS, JWT_JWKS_URL)'
  if (subscribeOn && !jwtOn) throw new Error(`SUBSCRIBE_AUTH=on needs ${keySettings}`)
  if (publishOn && !jwtOn && staticTokens.size === 0) throw new Error(`PUBLISH_AUTH=on needs PUBLISH_TOKENS, ${keySettings}`)
  const publicList = splitList(cfg.PUBLIC_TOPICS)
  const anonymous: Access | null = publicList.length === 0
    ? null
    : { who: 'anonymous', subscribe: new TopicPatterns(publicList), publish: NONE, expiresAt: null }

  // Static keys go through @fastify/jwt, one namespace each; JWKS keys through src/jwks.ts.
  const verify = {
    cache: 1000,
    clockTolerance: cfg.JWT_CLOCK_TOLERANCE_MS,
    ...(cfg.JWT_AUDIENCE !== '' && { allowedAud: cfg.JWT_AUDIENCE }),
    ...(cfg.JWT_ISSUER !== '' && { allowedIss: cfg.JWT_ISSUER }),
    // A configured aud or iss must be present, not only right when present.
    requiredClaims: [...(cfg.JWT_AUDIENCE !== '' ? ['aud'] : []), ...(cfg.JWT_ISSUER !== '' ? ['iss'] : [])]
  }
  for (const [i, secret] of secrets.entries()) {
    await fastify.register(fastifyJwt, { secret, namespace: `hmac${i}`, verify: { ...verify, algorithms: ['HS256', 'HS384', 'HS512'] } })
  }
  for (const [i, pem] of publicKeys.entries()) await fastify.register(fastifyJwt, { secret: { public: pem }, namespace: `pk${i}`, verify })
  const hmacVerifiers = secrets.map((_, i) => fastify.jwt[`hmac${i}`])
  const publicVerifiers = publicKeys.map((_, i) => fastify.jwt[`pk${i}`])
  const jwks = cfg.JWT_JWKS_URL === '' ? null : jwksSource(fastify, cfg.JWT_JWKS_URL, cfg.JWT_JWKS_REFRESH_MS, cfg.JWT_JWKS_MIN_REFRESH_MS)
  const rules: ClaimRules = { clockToleranceMs: cfg.JWT_CLOCK_TOLERANCE_MS, audience: cfg.JWT_AUDIENCE, issuer: cfg.JWT_ISSUER }
  // Cookies are parsed only where a stream token may be in one, not on every request.
  await fastify.register(fastifyCookie, { hook: false })

  /** The payload if any configured key verifies the token; HS* only ever against the secrets. */
  async function verifiedPayload (token: string, jwt: DecodedJwt): Promise<Record<string, unknown>> {
    const staticAttempts = (verifiers: typeof hmacVerifiers) => verifiers.map(v => () => {
      try {
        return v.verify<Record<string, unknown>>(token)
      } catch (err) {
        throw rejection(err)
      }
    })
    if (jwt.alg.startsWith('HS')) return firstVerified(staticAttempts(hmacVerifiers))
    const keys = jwks === null ? [] : await jwks.keys(jwt.kid, jwt.alg)
    if (keys.length === 0 && publicVerifiers.length === 0 && jwks !== null) {
      throw new TokenRejection(jwt.kid === null ? 'its key is unknown (no kid, and no JWKS key for its alg)' : 'its key (kid) is unknown')
    }
    const now = Date.now()
    // The PEM keys have no kid: they are tried after the JWKS keys, whatever the token names.
    return firstVerified([...keys.map(key => () => verifyWithKey(jwt, key, rules, now)), ...staticAttempts(publicVerifiers)])
  }

  /** The JWT's claims as an Access, or a 401 naming why the token is refused. */
  async function verifyJwt (token: string): Promise<Access> {
    const jwt = decodeJwt(token)
    if (jwt === null) throw new AuthError(401, 'token rejected: it is not a JWT', true)
    if (jwt.alg.toLowerCase() === 'none') throw new AuthError(401, 'token rejected: it is unsigned (alg none)', true)
    let payload: Record<string, unknown>
    try {
      payload = await verifiedPayload(token, jwt)
    } catch (err) {
      if (!(err instanceof TokenRejection)) throw err
      throw new AuthError(401, `token rejected: ${err.message}`, true)
    }
    if (cfg.JWT_REQUIRE_EXP === 'on' && payload.exp === undefined) {
      throw new AuthError(401, 'token rejected: it has no expiry (exp), which JWT_REQUIRE_EXP=on requires', true)
    }
    const grants = payload[claim] ?? {}
    if (typeof grants !== 'object' || grants === null || Array.isArray(grants)) {
      throw new AuthError(401, `token rejected: its claim ${claim} must be an object`, true)
    }
    const { subscribe, publish } = grants as { subscribe?: unknown, publish?: unknown }
    const exp = payload.exp
    return {
      who: 'jwt',
      // Public topics stay readable with a token.
      subscribe: new TopicPatterns([...publicList, ...patternList(subscribe, `${claim}.subscribe`)]),
      publish: new TopicPatterns(patternList(publish, `${claim}.publish`)),
      expiresAt: typeof exp === 'number' ? exp * 1000 + cfg.JWT_CLOCK_TOLERANCE_MS : null
    }
  }

  /** Header, then query, then cookie: what the client sent on purpose beats a stale cookie. */
  function streamToken (request: FastifyRequest): string | undefined {
    const fromHeader = bearer(request)
    if (fromHeader !== undefined) return fromHeader
    const query = request.query as Record<string, string | string[] | undefined>
    if (query.token !== undefined) {
      if (cfg.SUBSCRIBE_TOKEN_QUERY === 'off') {
        throw new AuthError(400, 'the token query parameter is turned off (SUBSCRIBE_TOKEN_QUERY=off): send the token in the Authorization header or the ' + cfg.AUTH_COOKIE_NAME + ' cookie')
      }
      if (typeof query.token !== 'string' || query.token === '') throw new AuthError(401, 'the token query parameter must be given once, not empty')
      return query.token
    }
    const cookies = request.headers.cookie === undefined ? {} : fastify.parseCookie(request.headers.cookie)
    const fromCookie = cookies[cfg.AUTH_COOKIE_NAME]
    return fromCookie === undefined || fromCookie === '' ? undefined : fromCookie
  }

  async function refuse (reply: FastifyReply, err: unknown): Promise<void> {
    if (!(err instanceof AuthError)) throw err
    if (err.wwwAuthenticate !== null) reply.header('www-authenticate', err.wwwAuthenticate)
    await reply.code(err.statusCode).send(errorBody(err.statusCode, err.message))
  }

  fastify.decorateRequest('access', null)

  async function authenticateSubscriber (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    try {
      const token = streamToken(request)
      if (token !== undefined) {
        request.access = await verifyJwt(token)
      } else if (anonymous !== null) {
        request.access = anonymous
      } else {
        throw new AuthError(401, `this stream needs a token: Authorization: Bearer <jwt>, the ${cfg.AUTH_COOKIE_NAME} cookie` +
          (cfg.SUBSCRIBE_TOKEN_QUERY === 'on' ? ' or ?token=<jwt>' : ''))
      }
    } catch (err) {
      await refuse(reply, err)
    }
  }

  async function authenticatePublisher (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    try {
      const token = bearer(request)
      if (token === undefined) throw new AuthError(401, 'publishing needs a token: Authorization: Bearer <token>')
      if (staticTokens.has(token)) {
        request.access = { who: 'token', subscribe: NONE, publish: EVERY, expiresAt: null }
      } else if (jwtOn && decodeJwt(token) !== null) {
        request.access = await verifyJwt(token)
      } else {
        throw new AuthError(401, jwtOn ? 'token rejected: it is neither a publish token nor a valid JWT' : 'token rejected: it is not one of PUBLISH_TOKENS', true)
      }
    } catch (err) {
      await refuse(reply, err)
    }
  }

  // As @fastify/rate-limit does: the hook goes only to routes that ask for it in their
  // config, and only when that action's auth is on (an open route runs no hook at all).
  const hooks = { subscribe: subscribeOn ? authenticateSubscriber : null, publish: publishOn ? authenticatePublisher : null }
  // The answers it adds, and the credentials it takes, are documented on the route.
  const schemes = Object.keys(securitySchemes(cfg))
  const security = {
    subscribe: [...schemes.filter(s => s !== 'bearer' || subscribeOn).map(s => ({ [s]: [] })), ...(anonymous !== null ? [{}] : [])],
    publish: [{ bearer: [] }]
  }
  const wwwAuthenticate = { 'www-authenticate': Type.String({ description: 'Bearer realm="sse-fanout", with error="invalid_token" when a token came' }) }
  fastify.addHook('onRoute', routeOptions => {
    const action = routeOptions.config?.auth
    if (action === undefined) return
    const hook = hooks[action]
    if (hook === null) return
    const existing = routeOptions.onRequest
    routeOptions.onRequest = existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook]
    documentAnswer(routeOptions, 401, action === 'subscribe'
      ? `${anonymous !== null ? 'A' : 'No token, or a'} token refused (expired, bad signature, unknown key, malformed header...): the message says why.`
      : 'No token, or one that is neither a PUBLISH_TOKENS token nor a valid JWT: the message says why.', wwwAuthenticate)
    if (action === 'subscribe' && cfg.SUBSCRIBE_TOKEN_QUERY === 'off') documentAnswer(routeOptions, 400, 'A token query parameter: it is turned off (SUBSCRIBE_TOKEN_QUERY=off).')
    routeOptions.schema = { ...routeOptions.schema, security: security[action] }
  })

  fastify.decorate('checkTopics', function (request: FastifyRequest, action: Action, topics: string[] | null): string | null {
    const access = request.access ?? (hooks[action] === null ? OPEN : null)
    if (access === null) return 'not authenticated'
    return refusedTopics(access, action, topics)
  })
}

export default fp(auth, { name: 'auth', fastify: '5.x', dependencies: ['config'] })
