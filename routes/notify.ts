// POST /notify: publish one event or a batch. Validation names the bad field; a
// rejected request publishes nothing.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifySchemaValidationError } from 'fastify'
import { Type } from 'typebox'
import { DegradedError, type Outgoing } from '../src/bus.js'
import { TOPIC_CHARS } from '../src/config.js'
import { EVENT_NAME_PATTERN, encodeBody } from '../src/frame.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The body came as one event object, not an array (answer with `id` too). */
    notifySingle: boolean
  }
}

/** One line naming the field at fault, in the caller's terms (body, body[2].topic). */
export function describeError (errors: FastifySchemaValidationError[], single: boolean, maxTopicLength: number): string {
  // The deepest error is the most specific; at one depth, a union (anyOf) reports its
  // branches' type mismatches first, so prefer what is not a type mismatch.
  const depth = Math.max(...errors.map(x => x.instancePath.length))
  const deepest = errors.filter(x => x.instancePath.length === depth)
  const e = deepest.find(x => x.keyword !== 'type' && x.keyword !== 'anyOf') ??
    deepest.find(x => x.keyword === 'anyOf') ?? deepest[0]
  let path = e.instancePath
  if (single) path = path.replace(/^\/0/, '')
  const field = 'body' + path.replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.')
  const params = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'additionalProperties': return `${field} has an unknown property '${String(params.additionalProperty)}' (allowed: topic, event, data)`
    case 'required': return `${field} must have the property '${String(params.missingProperty)}'`
    case 'anyOf': return `${field} must be a topic name or an array of topic names`
    case 'pattern':
      return field.includes('.event')
        ? `${field} must be 1-64 characters of A-Z a-z 0-9 _ . : -`
        : `${field} must be 1-${maxTopicLength} characters of A-Z a-z 0-9 _ . : @ / -`
    case 'maxItems': return `${field} must have at most ${String(params.limit)} items`
    case 'minItems': return `${field} must have at least ${String(params.limit)} item`
    default: return `${field} ${e.message ?? 'is invalid'}`
  }
}

export default async function notifyRoute (app: FastifyInstance): Promise<void> {
  const fastify = app.withTypeProvider<TypeBoxTypeProvider>()
  const cfg = fastify.config
  const Topic = Type.String({ minLength: 1, maxLength: cfg.MAX_TOPIC_LENGTH, pattern: TOPIC_CHARS.source })
  const Event = Type.Object({
    topic: Type.Optional(Type.Union([Topic, Type.Array(Topic, { minItems: 1, maxItems: cfg.MAX_TOPICS_PER_STREAM })])),
    event: Type.Optional(Type.String({ pattern: EVENT_NAME_PATTERN })),
    data: Type.Unknown()
  }, { additionalProperties: false })
  const Body = Type.Array(Event, { minItems: 1, maxItems: cfg.MAX_BATCH })

  // Only JSON is an event; a text/plain body gets 415 rather than a confusing 400.
  fastify.removeContentTypeParser('text/plain')
  fastify.decorateRequest('notifySingle', false)
  fastify.post('/notify', {
    bodyLimit: cfg.BODY_LIMIT_BYTES,
    schema: { body: Body },
    attachValidation: true,
    // One event is a batch of one; remember which the caller sent.
    preValidation: async (request) => {
      if (!Array.isArray(request.body)) {
        request.notifySingle = true
        request.body = [request.body] as typeof request.body
      }
    }
  }, async (request, reply) => {
    if (request.validationError !== undefined) {
      const message = describeError(request.validationError.validation, request.notifySingle, cfg.MAX_TOPIC_LENGTH)
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message })
    }
    const events: Outgoing[] = request.body.map(e => ({
      topics: e.topic === undefined ? null : [...new Set(Array.isArray(e.topic) ? e.topic : [e.topic])],
      body: encodeBody(e.event, e.data)
    }))
    let result
    try {
      result = await fastify.bus.publish(events)
    } catch (err) {
      const message = err instanceof DegradedError
        ? err.message
        : `publishing through Redis failed (${(err as Error).message}); the event may or may not have been sent`
      return reply.code(503).header('retry-after', '1').send({ statusCode: 503, error: 'Service Unavailable', message })
    }
    fastify.metrics.published.inc({ fanout: result.fanout }, events.length)
    return reply.code(202).send(request.notifySingle
      ? { id: result.ids[0], ids: result.ids, fanout: result.fanout }
      : { ids: result.ids, fanout: result.fanout })
  })
}
