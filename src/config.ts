// Every setting, its default and what it means: the one list. loadConfig() validates it
// (env-schema, as @fastify/env does); a bad value stops the start with a line naming it.
import envSchema from 'env-schema'
import { Type, type Static } from 'typebox'
import { EVENT_NAME_CHARS } from './topic.js'

export const configSchema = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000, description: 'HTTP port' }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1', description: 'Address to listen on (the container image sets 0.0.0.0)' }),
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info', description: 'pino log level' }),
  REDIS_URL: Type.String({ pattern: '^(rediss?://.+)?$', default: '', description: 'redis:// or rediss:// URL, optional user:password@; empty = single-instance mode' }),
  REDIS_MODE: Type.Enum(['auto', 'standalone', 'cluster'], { default: 'auto', description: 'One Redis or a Redis Cluster; auto asks the server at connect (cluster_enabled)' }),
  REDIS_CLUSTER_NODES: Type.String({ pattern: '^([^,\\s]+:\\d{1,5})?(,[^,\\s]+:\\d{1,5})*$', default: '', description: 'More cluster seed nodes besides REDIS_URL\'s, host:port comma-separated (implies cluster mode)' }),
  REDIS_SENTINELS: Type.String({ pattern: '^([^,\\s]+:\\d{1,5})?(,[^,\\s]+:\\d{1,5})*$', default: '', description: 'Redis Sentinel nodes, host:port comma-separated: the master is the one they name (REDIS_URL then gives only user, password and TLS)' }),
  REDIS_SENTINEL_NAME: Type.String({ default: '', description: 'The master name the sentinels monitor (with REDIS_SENTINELS)' }),
  REDIS_PREFIX: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$', default: 'sse:', description: 'Prefix of every Redis key and channel' }),
  REDIS_CONNECT_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 1000, description: 'How long the start waits for Redis before going on degraded' }),
  PUBLISH_WHEN_DEGRADED: Type.Enum(['local', 'reject'], { default: 'local', description: 'Redis down: deliver on this instance only (local) or answer 503 (reject)' }),
  OUTBOX_MAX_EVENTS: Type.Integer({ minimum: 0, default: 10000, description: 'Events accepted during a Redis outage that wait to reach the other instances; past it, 503' }),
  HEARTBEAT_INTERVAL_MS: Type.Integer({ minimum: 100, default: 15000, description: 'Comment line on idle streams this often' }),
  HEARTBEAT_EVENT: Type.String({ pattern: `^([${EVENT_NAME_CHARS}]{1,64})?$`, default: '', description: 'Send the heartbeat as this named event instead of a comment' }),
  RETRY_MS: Type.Integer({ minimum: 0, default: 2000, description: 'Reconnection delay sent to clients in the retry: line' }),
  HISTORY_SIZE: Type.Integer({ minimum: 1, default: 1000, description: 'Events kept per topic for resume' }),
  HISTORY_TTL_MS: Type.Integer({ minimum: 0, default: 86400000, description: 'Events older than this leave history (0 = no age limit)' }),
  MAX_CLIENTS: Type.Integer({ minimum: 1, default: 20000, description: 'Open streams per instance; more get 503' }),
  MAX_TOPICS_PER_STREAM: Type.Integer({ minimum: 1, maximum: 1000, default: 32, description: 'topic parameters per stream' }),
  MAX_TOPIC_LENGTH: Type.Integer({ minimum: 1, maximum: 1024, default: 128, description: 'Characters in a topic name' }),
  MAX_BATCH: Type.Integer({ minimum: 1, default: 1000, description: 'Events in one POST /notify' }),
  BODY_LIMIT_BYTES: Type.Integer({ minimum: 1024, default: 1048576, description: 'Largest POST /notify body' }),
  IDEMPOTENCY_WINDOW_MS: Type.Integer({ minimum: 1000, default: 3600000, description: 'How long a POST /notify Idempotency-Key is remembered: a retry within it gets the first answer and publishes nothing' }),
  CLIENT_BUFFER_BYTES: Type.Integer({ minimum: 1024, default: 2097152, description: 'Unsent bytes a client may owe before it is disconnected; keep it above the largest burst (a full POST /notify)' }),
  SHUTDOWN_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 10000, description: 'Longest a shutdown may take' }),
  DEMO_PAGE: Type.Enum(['on', 'off'], { default: 'on', description: 'Serve the page that watches streams and publishes (GET / and /demo)' }),
  API_DOCS: Type.Enum(['on', 'off'], { default: 'on', description: 'Serve the OpenAPI document (GET /docs/json, /docs/yaml) and its browsable page (GET /docs)' }),

  // Auth (off by default: anyone who reaches the service may read and publish).
  SUBSCRIBE_AUTH: Type.Enum(['off', 'on'], { default: 'off', description: 'on: GET /stream needs a JWT whose claim lists the topics it may read (except PUBLIC_TOPICS)' }),
  PUBLISH_AUTH: Type.Enum(['off', 'on'], { default: 'off', description: 'on: POST /notify needs one of PUBLISH_TOKENS or a JWT whose claim lists the topics it may publish to' }),
  PUBLISH_TOKENS: Type.String({ default: '', description: 'Static publisher tokens, comma-separated (several for rotation), each at least 16 characters; they may publish anywhere' }),
  JWT_SECRET: Type.String({ default: '', description: 'HMAC secret (HS256/384/512) that signs tokens, at least 32 characters' }),
  JWT_SECRETS: Type.String({ default: '', description: 'More HMAC secrets beside JWT_SECRET, comma-separated (for rotation), each at least 32 characters' }),
  JWT_PUBLIC_KEY: Type.String({ default: '', description: 'PEM public key (RS256/384/512, PS*, ES256/384/512, EdDSA) that verifies tokens, or several concatenated (for rotation); \\n escapes allowed' }),
  JWT_PUBLIC_KEY_FILE: Type.String({ default: '', description: 'File holding the PEM public key(s) (instead of JWT_PUBLIC_KEY)' }),
  JWT_JWKS_URL: Type.String({ pattern: '^(https?://.+)?$', default: '', description: 'https:// (or http://) URL of a JWKS whose keys (RSA, EC P-256/384/521, Ed25519) verify tokens by kid; empty = none' }),
  JWT_JWKS_REFRESH_MS: Type.Integer({ minimum: 1000, default: 600000, description: 'Refetch the JWKS this often' }),
  JWT_JWKS_MIN_REFRESH_MS: Type.Integer({ minimum: 100, default: 30000, description: 'A token with an unknown kid refetches the JWKS, at most once in this time' }),
  JWT_REQUIRE_EXP: Type.Enum(['off', 'on'], { default: 'off', description: 'on: tokens without exp are refused' }),
  JWT_AUDIENCE: Type.String({ default: '', description: 'Required aud claim (empty = not checked)' }),
  JWT_ISSUER: Type.String({ default: '', description: 'Required iss claim (empty = not checked)' }),
  JWT_CLAIM: Type.String({ pattern: '^[A-Za-z0-9_.:/-]{1,128}$', default: 'sse', description: 'Claim holding { subscribe: [...], publish: [...] } (mercure reads Mercure tokens)' }),
  JWT_CLOCK_TOLERANCE_MS: Type.Integer({ minimum: 0, maximum: 300000, default: 0, description: 'Leeway for exp and nbf' }),
  PUBLIC_TOPICS: Type.String({ default: '', description: 'Topic patterns anyone may read without a token when SUBSCRIBE_AUTH=on (comma-separated; empty = no anonymous streams)' }),
  AUTH_COOKIE_NAME: Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$", default: 'sse_token', description: 'Cookie a stream token may come in' }),
  SUBSCRIBE_TOKEN_QUERY: Type.Enum(['on', 'off'], { default: 'on', description: 'Accept the stream token as ?token= (EventSource cannot set headers; URLs end up in logs and history)' }),

  // Browsers on other origins.
  CORS_ORIGINS: Type.String({ default: '', description: 'Origins allowed to read cross-origin, comma-separated, with credentials; * = any origin without credentials; empty = no CORS headers' }),

  // Limits.
  MAX_EVENT_NAME_LENGTH: Type.Integer({ minimum: 1, maximum: 256, default: 64, description: 'Characters in an event name' }),
  MAX_DATA_DEPTH: Type.Integer({ minimum: 1, maximum: 1000, default: 64, description: 'Nesting depth of a POST /notify body' }),
  MAX_QUERY_PARAMS: Type.Integer({ minimum: 1, maximum: 1000, default: 16, description: 'Query parameters of GET /stream besides topic' }),
  RATE_LIMIT_WINDOW_MS: Type.Integer({ minimum: 1000, default: 60000, description: 'Window of both rate limits' }),
  RATE_LIMIT_PUBLISH: Type.Integer({ minimum: 0, default: 0, description: 'POST /notify per client address per window (0 = no limit); shared through Redis' }),
  RATE_LIMIT_STREAMS: Type.Integer({ minimum: 0, default: 0, description: 'New streams per client address per window (0 = no limit); shared through Redis' }),
  TRUST_PROXY: Type.String({ default: '', description: 'Proxies whose X-Forwarded-For gives the client address: addresses, CIDRs, loopback, linklocal, uniquelocal (comma-separated)' }),
  PRESSURE_MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ minimum: 0, default: 1000, description: 'Refuse new streams and publishes (503) while the event loop lags more (0 = off)' }),
  PRESSURE_MAX_EVENT_LOOP_UTILIZATION: Type.Number({ minimum: 0, maximum: 1, default: 0, description: 'Same, for event loop utilization 0-1 over the last sample (0 = off)' }),
  PRESSURE_MAX_HEAP_USED_BYTES: Type.Integer({ minimum: 0, default: 0, description: 'Same, for V8 heap in use (0 = off)' }),
  PRESSURE_MAX_RSS_BYTES: Type.Integer({ minimum: 0, default: 0, description: 'Same, for resident memory (0 = off)' }),
  PRESSURE_SAMPLE_INTERVAL_MS: Type.Integer({ minimum: 10, default: 1000, description: 'How often the pressure is measured' }),
  HEADERS_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 10000, description: 'Longest a client may take to send its request headers' }),
  REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 30000, description: 'Longest a client may take to send its whole request (streams are not affected)' })
})

export type Config = Static<typeof configSchema>

export interface LoadConfigOptions {
  /** Values that win over the environment (tests, embedding). */
  values?: Record<string, unknown>
  /** Read process.env (default true). */
  env?: boolean
  /** Read ./.env (default: same as env). */
  dotenv?: boolean
}

/** The settings: `values`, then process.env, then ./.env, then the defaults. */
export function loadConfig (opts: LoadConfigOptions = {}): Config {
  const env = opts.env ?? true
  const config = envSchema<Config>({
    schema: structuredClone(configSchema),
    data: opts.values ?? {},
    env,
    dotenv: opts.dotenv ?? env
  })
  if (config.HEADERS_TIMEOUT_MS > config.REQUEST_TIMEOUT_MS) {
    throw new Error(`HEADERS_TIMEOUT_MS (${config.HEADERS_TIMEOUT_MS}) must not exceed REQUEST_TIMEOUT_MS (${config.REQUEST_TIMEOUT_MS})`)
  }
  return config
}

/** A comma-separated setting as a list, blanks dropped. */
export function splitList (value: string): string[] {
  return value.split(',').map(x => x.trim()).filter(x => x !== '')
}
