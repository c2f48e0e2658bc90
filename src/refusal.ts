// How the service says no: one error body for every refused request.
import { STATUS_CODES } from 'node:http'

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
