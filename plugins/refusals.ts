// Temporary refusals: at MAX_CLIENTS, under pressure, rate-limited, shutting down. A route
// that serves SSE (config.sse) answers them, to a request that accepts text/event-stream,
// as a stream that ends, so a browser's EventSource retries by itself; others get the code.
import type { FastifyInstance, FastifyReply } from 'fastify'
import fp from 'fastify-plugin'
import { answerRefusal, AS_STREAM, documentAnswer, REFUSAL_REASONS, shutdownRefusal, type RefusalReason, type TemporaryRefusal } from '../src/refusal.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route serves an SSE stream: its temporary refusals are answered so EventSource retries. */
    sse?: boolean
  }
  interface FastifyInstance {
    /** `closing`: close() has begun, new requests are refused; `refused`: SSE routes' refusals by reason, read at scrape time. */
    refusals: { closing: boolean, refused: Record<RefusalReason, number> }
  }
  interface FastifyReply {
    /** Sends a temporary refusal, as answerRefusal says, and counts it when the route serves SSE. */
    refuseForNow: (refusal: TemporaryRefusal) => FastifyReply
  }
}

async function refusals (fastify: FastifyInstance): Promise<void> {
  const state = {
    closing: false,
    refused: Object.fromEntries(REFUSAL_REASONS.map(reason => [reason, 0])) as Record<RefusalReason, number>
  }
  fastify.decorate('refusals', state)
  fastify.decorateReply('refuseForNow', function (this: FastifyReply, refusal: TemporaryRefusal): FastifyReply {
    const sse = this.request.routeOptions.config.sse === true
    if (sse) state.refused[refusal.reason]++
    const answer = answerRefusal(refusal, sse ? this.request.headers.accept : undefined)
    // A hook before (rate limit) may have set one; on a 200 it would only confuse.
    if (answer.stream) this.removeHeader('retry-after')
    return this.code(answer.statusCode).headers(answer.headers).send(answer.body)
  })

  // In place of Fastify's return503OnClosing, which answers before every hook: this one
  // runs after CORS, and answers a stream request so that EventSource retries. Registered
  // before the fan-out, so it says "closing" before the streams are ended.
  const shutdown = shutdownRefusal(fastify.config.RETRY_MS)
  fastify.addHook('preClose', done => {
    state.closing = true
    done()
  })
  // A callback hook, not an async one: no promise per request.
  fastify.addHook('onRequest', (_request, reply, done) => {
    if (!state.closing) return done()
    reply.refuseForNow(shutdown)
  })
  fastify.addHook('onRoute', route => {
    documentAnswer(route, 503, 'Shutting down: new requests are refused, without Retry-After (the retry is for another instance).' +
      (route.config?.sse === true ? AS_STREAM : ''))
  })
}

export default fp(refusals, { name: 'refusals', fastify: '5.x', dependencies: ['config'] })
