// Every setting, its default and what it means: the one list. Validated at start by
// @fastify/env; a bad value stops the start with a line naming the variable.

export const configSchema = {
  type: 'object',
  properties: {
    PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 3000, description: 'HTTP port' },
    HOST: { type: 'string', minLength: 1, default: '0.0.0.0', description: 'Address to listen on' },
    LOG_LEVEL: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', description: 'pino log level' },
    REDIS_URL: { type: 'string', pattern: '^(rediss?://.+)?$', default: '', description: 'redis:// or rediss:// URL, optional user:password@; empty = single-instance mode' },
    REDIS_PREFIX: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,64}$', default: 'sse:', description: 'Prefix of every Redis key and channel' },
    REDIS_CONNECT_TIMEOUT_MS: { type: 'integer', minimum: 100, default: 1000, description: 'How long the start waits for Redis before going on degraded' },
    PUBLISH_WHEN_DEGRADED: { type: 'string', enum: ['local', 'reject'], default: 'local', description: 'Redis down: deliver on this instance only (local) or answer 503 (reject)' },
    OUTBOX_MAX_EVENTS: { type: 'integer', minimum: 0, default: 10000, description: 'Events accepted during a Redis outage that wait to reach the other instances; past it, 503' },
    HEARTBEAT_INTERVAL_MS: { type: 'integer', minimum: 100, default: 15000, description: 'Comment line on idle streams this often' },
    HEARTBEAT_EVENT: { type: 'string', pattern: '^([A-Za-z0-9_.:-]{1,64})?$', default: '', description: 'Send the heartbeat as this named event instead of a comment' },
    RETRY_MS: { type: 'integer', minimum: 0, default: 2000, description: 'Reconnection delay sent to clients in the retry: line' },
    HISTORY_SIZE: { type: 'integer', minimum: 1, default: 1000, description: 'Events kept per topic for resume' },
    HISTORY_TTL_MS: { type: 'integer', minimum: 0, default: 86400000, description: 'Events older than this leave history (0 = no age limit)' },
    MAX_CLIENTS: { type: 'integer', minimum: 1, default: 20000, description: 'Open streams per instance; more get 503' },
    MAX_TOPICS_PER_STREAM: { type: 'integer', minimum: 1, maximum: 1000, default: 32, description: 'topic parameters per stream' },
    MAX_TOPIC_LENGTH: { type: 'integer', minimum: 1, maximum: 1024, default: 128, description: 'Characters in a topic name' },
    MAX_BATCH: { type: 'integer', minimum: 1, default: 1000, description: 'Events in one POST /notify' },
    BODY_LIMIT_BYTES: { type: 'integer', minimum: 1024, default: 1048576, description: 'Largest POST /notify body' },
    CLIENT_BUFFER_BYTES: { type: 'integer', minimum: 1024, default: 2097152, description: 'Unsent bytes a client may owe before it is disconnected; keep it above the largest burst (a full POST /notify)' },
    SHUTDOWN_TIMEOUT_MS: { type: 'integer', minimum: 100, default: 10000, description: 'Longest a shutdown may take' },

    // Auth (off by default: anyone who reaches the service may read and publish).
    SUBSCRIBE_AUTH: { type: 'string', enum: ['off', 'on'], default: 'off', description: 'on: GET /stream needs a JWT whose claim lists the topics it may read (except PUBLIC_TOPICS)' },
    PUBLISH_AUTH: { type: 'string', enum: ['off', 'on'], default: 'off', description: 'on: POST /notify needs one of PUBLISH_TOKENS or a JWT whose claim lists the topics it may publish to' },
    PUBLISH_TOKENS: { type: 'string', default: '', description: 'Static publisher tokens, comma-separated (several for rotation), each at least 16 characters; they may publish anywhere' },
    JWT_SECRET: { type: 'string', default: '', description: 'HMAC secret (HS256/384/512) that signs tokens, at least 32 characters' },
    JWT_PUBLIC_KEY: { type: 'string', default: '', description: 'PEM public key (RS256/384/512, PS*, ES256/384/512) that verifies tokens; \\n escapes allowed' },
    JWT_PUBLIC_KEY_FILE: { type: 'string', default: '', description: 'File holding the PEM public key (instead of JWT_PUBLIC_KEY)' },
    JWT_AUDIENCE: { type: 'string', default: '', description: 'Required aud claim (empty = not checked)' },
    JWT_ISSUER: { type: 'string', default: '', description: 'Required iss claim (empty = not checked)' },
    JWT_CLAIM: { type: 'string', pattern: '^[A-Za-z0-9_.:/-]{1,128}$', default: 'sse', description: 'Claim holding { subscribe: [...], publish: [...] } (mercure reads Mercure tokens)' },
    JWT_CLOCK_TOLERANCE_MS: { type: 'integer', minimum: 0, maximum: 300000, default: 0, description: 'Leeway for exp and nbf' },
    PUBLIC_TOPICS: { type: 'string', default: '', description: 'Topic patterns anyone may read without a token when SUBSCRIBE_AUTH=on (comma-separated; empty = no anonymous streams)' },
    AUTH_COOKIE_NAME: { type: 'string', pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$", default: 'sse_token', description: 'Cookie a stream token may come in' },
    SUBSCRIBE_TOKEN_QUERY: { type: 'string', enum: ['on', 'off'], default: 'on', description: 'Accept the stream token as ?token= (EventSource cannot set headers; URLs end up in logs and history)' },

    // Browsers on other origins.
    CORS_ORIGINS: { type: 'string', default: '', description: 'Origins allowed to read cross-origin, comma-separated, with credentials; * = any origin without credentials; empty = no CORS headers' },

    // Limits.
    MAX_EVENT_NAME_LENGTH: { type: 'integer', minimum: 1, maximum: 256, default: 64, description: 'Characters in an event name' },
    MAX_DATA_DEPTH: { type: 'integer', minimum: 1, maximum: 1000, default: 64, description: 'Nesting depth of a POST /notify body' },
    MAX_QUERY_PARAMS: { type: 'integer', minimum: 1, maximum: 1000, default: 16, description: 'Query parameters of GET /stream besides topic' },
    RATE_LIMIT_WINDOW_MS: { type: 'integer', minimum: 1000, default: 60000, description: 'Window of both rate limits' },
    RATE_LIMIT_PUBLISH: { type: 'integer', minimum: 0, default: 0, description: 'POST /notify per client address per window (0 = no limit); shared through Redis' },
    RATE_LIMIT_STREAMS: { type: 'integer', minimum: 0, default: 0, description: 'New streams per client address per window (0 = no limit); shared through Redis' },
    TRUST_PROXY: { type: 'string', default: '', description: 'Proxies whose X-Forwarded-For gives the client address: addresses, CIDRs, loopback, linklocal, uniquelocal (comma-separated)' },
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: { type: 'integer', minimum: 0, default: 1000, description: 'Refuse new streams and publishes (503) while the event loop lags more (0 = off)' },
    PRESSURE_MAX_EVENT_LOOP_UTILIZATION: { type: 'number', minimum: 0, maximum: 1, default: 0, description: 'Same, for event loop utilization 0-1 over the last sample (0 = off)' },
    PRESSURE_MAX_HEAP_USED_BYTES: { type: 'integer', minimum: 0, default: 0, description: 'Same, for V8 heap in use (0 = off)' },
    PRESSURE_MAX_RSS_BYTES: { type: 'integer', minimum: 0, default: 0, description: 'Same, for resident memory (0 = off)' },
    PRESSURE_SAMPLE_INTERVAL_MS: { type: 'integer', minimum: 10, default: 1000, description: 'How often the pressure is measured' },
    HEADERS_TIMEOUT_MS: { type: 'integer', minimum: 100, default: 10000, description: 'Longest a client may take to send its request headers' },
    REQUEST_TIMEOUT_MS: { type: 'integer', minimum: 100, default: 30000, description: 'Longest a client may take to send its whole request (streams are not affected)' }
  }
} as const

export interface Config {
  PORT: number
  HOST: string
  LOG_LEVEL: string
  REDIS_URL: string
  REDIS_PREFIX: string
  REDIS_CONNECT_TIMEOUT_MS: number
  PUBLISH_WHEN_DEGRADED: 'local' | 'reject'
  OUTBOX_MAX_EVENTS: number
  HEARTBEAT_INTERVAL_MS: number
  HEARTBEAT_EVENT: string
  RETRY_MS: number
  HISTORY_SIZE: number
  HISTORY_TTL_MS: number
  MAX_CLIENTS: number
  MAX_TOPICS_PER_STREAM: number
  MAX_TOPIC_LENGTH: number
  MAX_BATCH: number
  BODY_LIMIT_BYTES: number
  CLIENT_BUFFER_BYTES: number
  SHUTDOWN_TIMEOUT_MS: number
  SUBSCRIBE_AUTH: 'off' | 'on'
  PUBLISH_AUTH: 'off' | 'on'
  PUBLISH_TOKENS: string
  JWT_SECRET: string
  JWT_PUBLIC_KEY: string
  JWT_PUBLIC_KEY_FILE: string
  JWT_AUDIENCE: string
  JWT_ISSUER: string
  JWT_CLAIM: string
  JWT_CLOCK_TOLERANCE_MS: number
  PUBLIC_TOPICS: string
  AUTH_COOKIE_NAME: string
  SUBSCRIBE_TOKEN_QUERY: 'on' | 'off'
  CORS_ORIGINS: string
  MAX_EVENT_NAME_LENGTH: number
  MAX_DATA_DEPTH: number
  MAX_QUERY_PARAMS: number
  RATE_LIMIT_WINDOW_MS: number
  RATE_LIMIT_PUBLISH: number
  RATE_LIMIT_STREAMS: number
  TRUST_PROXY: string
  PRESSURE_MAX_EVENT_LOOP_DELAY_MS: number
  PRESSURE_MAX_EVENT_LOOP_UTILIZATION: number
  PRESSURE_MAX_HEAP_USED_BYTES: number
  PRESSURE_MAX_RSS_BYTES: number
  PRESSURE_SAMPLE_INTERVAL_MS: number
  HEADERS_TIMEOUT_MS: number
  REQUEST_TIMEOUT_MS: number
}

/** A comma-separated setting as a list, blanks dropped. */
export function splitList (value: string): string[] {
  return value.split(',').map(x => x.trim()).filter(x => x !== '')
}

/** Topic names: letters, digits and _ . : - @ / (no ',' '*' '?' '{' or spaces). */
export const TOPIC_CHARS = /^[A-Za-z0-9_.:@/-]+$/
