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
    SHUTDOWN_TIMEOUT_MS: { type: 'integer', minimum: 100, default: 10000, description: 'Longest a shutdown may take' }
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
}

/** Topic names: letters, digits and _ . : - @ / (no ',' '*' '?' '{' or spaces). */
export const TOPIC_CHARS = /^[A-Za-z0-9_.:@/-]+$/
