// Who may read and publish what. Off by default (anyone may do anything); when on, a
// stream needs a JWT listing the topics it may read, a publisher a static token or a
// JWT listing the topics it may publish to. The routes ask `checkTopics` after parsing.
import fastifyCookie from '@fastify/cookie'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { createHash, createPublicKey, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { EVERY, NONE, OPEN, refusedTopics, TopicPatterns, type Access, type Action } from '../src/access.js'
import { splitList } from '../src/config.js'
import { errorBody } from '../src/refusal.js'

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
    namespaces: 'hmac' | 'pk'
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

function readPublicKey (pem: string, file: string): string {
  if (pem !== '' && file !== '') throw new Error('set JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE, not both')
  let text = pem.replace(/\\n/g, '\n')
  if (file !== '') {
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new Error(`JWT_PUBLIC_KEY_FILE cannot be read: ${(err as Error).message}`)
    }
  }
  if (text === '') return ''
  try {
    createPublicKey(text)
  } catch (err) {
    throw new Error(`${file !== '' ? 'JWT_PUBLIC_KEY_FILE' : 'JWT_PUBLIC_KEY'} is not a PEM public key (${(err as Error).message})`)
  }
  return text
}

function patternList (value: unknown, where: string): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || !value.every(x => typeof x === 'string')) {
    throw new AuthError(401, `token rejected: its claim ${where} must be an array of topic patterns`, true)
  }
  return value
}

/** The `alg` of a compact JWT's header, or null when it is not one. */
function jwtAlgorithm (token: string): string | null {
  const parts = token.split('.')
  if (parts.length !== 3) return null
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')) as unknown
    if (typeof header !== 'object' || header === null) return null
    const alg = (header as { alg?: unknown }).alg
    return typeof alg === 'string' ? alg : null
  } catch {
    return null
  }
}

/** The bearer token of an Authorization header; undefined without the header. */
function bearer (request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  if (header === undefined) return undefined
  const match = /^Bearer +(\S+) *$/i.exec(header)
  if (match === null) throw new AuthError(401, 'the Authorization header must be "Bearer <token>"')
  return match[1]
}

async function auth (fastify: FastifyInstance): Promise<void> {
  const cfg = fastify.config
  const subscribeOn = cfg.SUBSCRIBE_AUTH === 'on'
  const publishOn = cfg.PUBLISH_AUTH === 'on'
  const claim = cfg.JWT_CLAIM
  const secret = cfg.JWT_SECRET
  if (secret !== '' && secret.length < 32) throw new Error('JWT_SECRET must be at least 32 characters')
  const publicKey = readPublicKey(cfg.JWT_PUBLIC_KEY, cfg.JWT_PUBLIC_KEY_FILE)
  const tokenList = splitList(cfg.PUBLISH_TOKENS)
  if (tokenList.some(t => t.length < 16 || /\s/.test(t))) throw new Error('PUBLISH_TOKENS must be at least 16 characters each, without spaces')
  const staticTokens = new StaticTokens(tokenList)
  const jwtOn = secret !== '' || publicKey !== ''
  if (subscribeOn && !jwtOn) throw new Error('SUBSCRIBE_AUTH=on needs JWT_SECRET or JWT_PUBLIC_KEY (or JWT_PUBLIC_KEY_FILE)')
  if (publishOn && !jwtOn && staticTokens.size === 0) throw new Error('PUBLISH_AUTH=on needs PUBLISH_TOKENS, JWT_SECRET or JWT_PUBLIC_KEY')
  const publicList = splitList(cfg.PUBLIC_TOPICS)
  const anonymous: Access | null = publicList.length === 0
    ? null
    : { who: 'anonymous', subscribe: new TopicPatterns(publicList), publish: NONE, expiresAt: null }

  if (jwtOn) {
    const verify = {
      cache: 1000,
      clockTolerance: cfg.JWT_CLOCK_TOLERANCE_MS,
      ...(cfg.JWT_AUDIENCE !== '' && { allowedAud: cfg.JWT_AUDIENCE }),
      ...(cfg.JWT_ISSUER !== '' && { allowedIss: cfg.JWT_ISSUER }),
      // A configured aud or iss must be present, not only right when present.
      requiredClaims: [...(cfg.JWT_AUDIENCE !== '' ? ['aud'] : []), ...(cfg.JWT_ISSUER !== '' ? ['iss'] : [])]
    }
    if (secret !== '') await fastify.register(fastifyJwt, { secret, namespace: 'hmac', verify: { ...verify, algorithms: ['HS256', 'HS384', 'HS512'] } })
    if (publicKey !== '') await fastify.register(fastifyJwt, { secret: { public: publicKey }, namespace: 'pk', verify })
  }
  // Cookies are parsed only where a stream token may be in one, not on every request.
  await fastify.register(fastifyCookie, { hook: false })

  /** The JWT's claims as an Access, or a 401 naming why the token is refused. */
  function verifyJwt (token: string): Access {
    const alg = jwtAlgorithm(token)
    if (alg === null) throw new AuthError(401, 'token rejected: it is not a JWT', true)
    if (alg.toLowerCase() === 'none') throw new AuthError(401, 'token rejected: it is unsigned (alg none)', true)
    const verifier = alg.startsWith('HS') ? (secret !== '' ? fastify.jwt.hmac : null) : (publicKey !== '' ? fastify.jwt.pk : null)
    if (verifier === null) throw new AuthError(401, 'token rejected: its algorithm is not accepted', true)
    let payload: Record<string, unknown>
    try {
      payload = verifier.verify(token)
    } catch (err) {
      const code = (err as { code?: string }).code ?? ''
      const reason = JWT_REASONS[code] ??
        (code.startsWith('FAST_JWT_') && /claim/i.test((err as Error).message) ? (err as Error).message.replace(/\.$/, '') : 'it cannot be verified')
      throw new AuthError(401, `token rejected: ${reason}`, true)
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
        request.access = verifyJwt(token)
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
      } else if (jwtOn && jwtAlgorithm(token) !== null) {
        request.access = verifyJwt(token)
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
  fastify.addHook('onRoute', routeOptions => {
    const action = routeOptions.config?.auth
    if (action === undefined) return
    const hook = hooks[action]
    if (hook === null) return
    const existing = routeOptions.onRequest
    routeOptions.onRequest = existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook]
  })

  fastify.decorate('checkTopics', function (request: FastifyRequest, action: Action, topics: string[] | null): string | null {
    const access = request.access ?? (hooks[action] === null ? OPEN : null)
    if (access === null) return 'not authenticated'
    return refusedTopics(access, action, topics)
  })
}

export default fp(auth, { name: 'auth', fastify: '5.x', dependencies: ['config'] })
