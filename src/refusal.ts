// How the service says no: one error body for every refused request, and temporary
// refusals answered so that a browser's EventSource retries by itself.
import { STATUS_CODES } from 'node:http'
import { encodeRefusal, STREAM_HEADERS } from './frame.js'

export interface ErrorBody {
  statusCode: number
  error: string
  message: string
}

/** The body of a refusal, in Fastify's own error shape. */
export function errorBody (statusCode: number, message: string): ErrorBody {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message }
}

/** The Retry-After of a temporary refusal: the stream's reconnection delay, in whole seconds. */
export function retryAfterSeconds (retryMs: number): string {
  return String(Math.max(1, Math.ceil(retryMs / 1000)))
}

/** Why a stream cannot be served now (the label of sse_stream_refusals_total). */
export type RefusalReason = 'max_clients' | 'pressure' | 'rate_limit' | 'shutdown'
export const REFUSAL_REASONS: readonly RefusalReason[] = ['max_clients', 'pressure', 'rate_limit', 'shutdown']

/** A "not now": the same request may succeed later (unlike 400/401/403). */
export interface TemporaryRefusal {
  statusCode: 429 | 503
  reason: RefusalReason
  /** When a retry may succeed: RETRY_MS, or the rate limit's reset. */
  retryAfterMs: number
  message: string
}

/** What every new request gets once the instance began to close (Fastify's own 503 said the same). */
export function shutdownRefusal (retryMs: number): TemporaryRefusal {
  return { statusCode: 503, reason: 'shutdown', retryAfterMs: retryMs, message: 'Service Unavailable' }
}

export interface RefusalAnswer {
  statusCode: number
  headers: Record<string, string>
  body: Buffer | ErrorBody
  /** Sent as an SSE stream (a Retry-After set by someone else does not belong on it). */
  stream: boolean
}

/** Whether an Accept header names text/event-stream (EventSource's); a wildcard (curl, fetch, monitoring) does not count. */
export function acceptsEventStream (accept: string | undefined): boolean {
  if (accept === undefined) return false
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';')
    if (type.trim().toLowerCase() !== 'text/event-stream') continue
    if (!params.some(p => /^\s*q\s*=\s*0(\.0*)?\s*$/i.test(p))) return true
  }
  return false
}

/**
 * How a temporary refusal is answered. To a request that accepts text/event-stream (`accept`
 * undefined: the route serves no stream), a 200 stream that ends, with the delay as `retry:`:
 * EventSource retries by itself, where a 429 or 503 would make it give up for good. To anyone
 * else, the status code with Retry-After, except while shutting down: this instance will not
 * take the request later, the load balancer sends the retry elsewhere.
 */
export function answerRefusal (refusal: TemporaryRefusal, accept: string | undefined): RefusalAnswer {
  const retryAfter = retryAfterSeconds(refusal.retryAfterMs)
  if (acceptsEventStream(accept)) {
    return {
      statusCode: 200,
      headers: { ...STREAM_HEADERS },
      body: encodeRefusal(Number(retryAfter) * 1000, refusal.statusCode, refusal.reason),
      stream: true
    }
  }
  return {
    statusCode: refusal.statusCode,
    headers: refusal.reason === 'shutdown' ? {} : { 'retry-after': retryAfter },
    body: errorBody(refusal.statusCode, refusal.message),
    stream: false
  }
}
