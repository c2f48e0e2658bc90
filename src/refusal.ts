// How the service says no: one error body for every refused request, and temporary
// refusals answered so that a browser's EventSource retries by itself.
import { STATUS_CODES } from 'node:http'
import { Type, type TObject, type TSchema } from 'typebox'
import { encodeRefusal, STREAM_HEADERS } from './frame.js'

export interface ErrorBody {
  statusCode: number
  error: string
  message: string
}

/** ErrorBody as a schema; Fastify's own errors (413, 415, a bad JSON body) add their `code`. */
export const ErrorBodySchema = Type.Object({
  statusCode: Type.Integer(),
  code: Type.Optional(Type.String()),
  error: Type.String({ description: 'The status text' }),
  message: Type.String({ description: 'What is wrong, naming the field, header or setting' })
})

/** A Retry-After response header, in the shape OpenAPI documents headers. */
export const RETRY_AFTER = { 'retry-after': Type.String({ description: 'Seconds to wait before retrying' }) }

/** The response schema of an error answer: an ErrorBody, described (for the API docs), with its headers. */
export function errorResponse (description: string, headers: Record<string, TSchema> = {}): TObject<typeof ErrorBodySchema.properties> {
  // x-response-description: the answer's description (@fastify/swagger), not repeated in its body's schema.
  return Type.Object(ErrorBodySchema.properties, { 'x-response-description': description, ...(Object.keys(headers).length > 0 && { headers }) })
}

/** A route's options, as far as its documented answers go (Fastify's RouteOptions is one). */
export interface DocumentedRoute {
  schema?: { hide?: boolean, response?: unknown }
}

/**
 * Adds an error answer to a route's response schemas: it is documented (API docs), and its
 * body serialized as an ErrorBody. A status the route has already gets the description
 * appended and keeps its body schema. The schema is copied, not changed in place: routes may share one.
 */
export function documentAnswer (route: DocumentedRoute, statusCode: number, description: string, headers: Record<string, TSchema> = {}): void {
  if (route.schema?.hide === true) return
  const responses = (route.schema?.response ?? {}) as Record<string, { 'x-response-description'?: string, headers?: Record<string, TSchema> } | undefined>
  const existing = responses[statusCode]
  const before = existing?.['x-response-description']
  if (before?.includes(description) === true) return
  const text = before === undefined ? description : `${before}\n\n${description}`
  const allHeaders = { ...existing?.headers, ...headers }
  // A status the route answers already keeps its own body schema (a union, say): only its text and headers grow.
  const answer = existing === undefined
    ? errorResponse(text, allHeaders)
    : { ...existing, 'x-response-description': text, ...(Object.keys(allHeaders).length > 0 && { headers: allHeaders }) }
  route.schema = { ...route.schema, response: { ...responses, [statusCode]: answer } }
}

/** How a temporary refusal of an SSE route is documented besides its status code. */
export const AS_STREAM = ' To a request that accepts text/event-stream: a 200 stream that ends instead (see 200).'

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
