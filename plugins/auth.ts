// Who may read and publish what. Off by default (anyone may do anything); when on, a
// stream needs a JWT listing the topics it may read, a publisher a static token or a
// JWT listing the topics it may publish to. The routes ask `checkTopics` after parsing.
import fastifyCookie from '@fastify/cookie'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { createHash, createPublicKey, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { splitList } from '../src/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook of GET /stream: sets `request.access` or answers 400/401. */
    authenticateSubscriber: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
    /** onRequest hook of POST /notify: sets `request.access` or answers 401; null when publishing is open. */
    authenticatePublisher: ((request: FastifyRequest, reply: FastifyReply) => Promise<void>) | null
    /** null when `request.access` allows every topic (null topics = a broadcast), else why not. */
    checkTopics: (request: FastifyRequest, action: 'subscribe' | 'publish', topics: string[] | null) => string | null
  }
  interface FastifyRequest {
    /** Set by the auth hooks; null on POST /notify when publishing is open (no hook runs). */
    access: Access | null
  }
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    namespaces: 'hmac' | 'pk'
  }
}

/**
 * Topics as a token lists them: a name matches itself; a pattern ending in `*` matches
 * every topic starting with what precedes the `*` (`orders:*` matches `orders:1` and
 * `orders:`, not `orders`); `*` alone matches every topic. No other character is special.
 */
export class TopicPatterns {
  readonly all: boolean
  private readonly exact = new Set<string>()
  private readonly prefixes: string[] = []

  constructor (patterns: readonly string[]) {
    for (const p of patterns) {
      if (p.endsWith('*')) this.prefixes.push(p.slice(0, -1))
      else if (p !== '') this.exact.add(p)
    }
    this.all = this.prefixes.includes('')
  }

  matches (topic: string): boolean {
    if (this.all || this.exact.has(topic)) return true
    for (const prefix of this.prefixes) if (topic.startsWith(prefix)) return true
    return false
  }
}

/** What one request may do. */
export interface Access {
  /** 'open' when auth is off, 'anonymous' without a token, else the token's kind. */
  who: 'open' | 'anonymous' | 'token' | 'jwt'
  subscribe: TopicPatterns
  publish: TopicPatterns
  /** When the credential stops being valid (ms since the epoch); null = never. */
  expiresAt: number | null
}

const EVERY = new TopicPatterns(['*'])
const NONE = new TopicPatterns([])
const OPEN: Access = { who: 'open', subscribe: EVERY, publish: EVERY, expiresAt: null }
const LONGEST_TIMER = 2 ** 31 - 1

/** Calls `close` at `expiresAt` (ms since the epoch), however far away; returns a cancel. */
export function closeAtExpiry (expiresAt: number, close: () => void): () => void {
  let timer: NodeJS.Timeout
  const arm = (): void => {
    const left = expiresAt - Date.now()
    if (left <= 0) { close(); return }
    timer = setTimeout(arm, Math.min(left, LONGEST_TIMER))
  }
  arm()
  return () => clearTimeout(timer)
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
    const error = err.statusCode === 400 ? 'Bad Request' : 'Unauthorized'
    await reply.code(err.statusCode).send({ statusCode: err.statusCode, error, message: err.message })
  }

  fastify.decorateRequest('access', null)

  fastify.decorate('authenticateSubscriber', async function (request: FastifyRequest, reply: FastifyReply) {
    if (!subscribeOn) {
      request.access = OPEN
      return
    }
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
  })

  // Publishing open (the default): no hook at all; checkTopics reads no access as OPEN.
  const authenticatePublisher = async function (request: FastifyRequest, reply: FastifyReply): Promise<void> {
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
  fastify.decorate('authenticatePublisher', publishOn ? authenticatePublisher : null)

  fastify.decorate('checkTopics', function (request: FastifyRequest, action: 'subscribe' | 'publish', topics: string[] | null): string | null {
    const access = request.access ?? (action === 'publish' && !publishOn ? OPEN : null)
    if (access === null) return 'not authenticated'
    const allowed = access[action]
    if (allowed.all) return null
    const whose = access.who === 'anonymous' ? 'a stream without a token (PUBLIC_TOPICS)' : 'this token'
    if (topics === null) return `${whose} may not publish a broadcast (an event without topic needs the publish pattern "*")`
    for (const topic of topics) {
      if (!allowed.matches(topic)) return `${whose} may not ${action === 'subscribe' ? 'read' : 'publish to'} topic "${topic}"`
    }
    return null
  })
}

export default fp(auth, { name: 'auth', fastify: '5.x', dependencies: ['config'] })
