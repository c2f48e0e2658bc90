// POST /notify: publish one event or a batch. Validation names the bad field; a
// rejected request publishes nothing. With an Idempotency-Key, a retry publishes nothing
// and gets the first answer (src/idempotency/).
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyInstance } from 'fastify'
import { isUtf8 } from 'node:buffer'
import { Type } from 'typebox'
import { DegradedError, NotPublishedError, PartialPublishError, type Outgoing } from '../src/bus/bus.js'
import { BROADCAST } from '../src/cursor.js'
import { encodeBody } from '../src/frame.js'
import { checkIdempotencyKey, fingerprint, IDEMPOTENCY_KEY, type Answer } from '../src/idempotency/idempotency.js'
import { describeError, nestsDeeper } from '../src/notify-body.js'
import { errorBody, ErrorBodySchema, errorResponse, RETRY_AFTER } from '../src/refusal.js'
import { eventNamePattern, TOPIC_CHARS } from '../src/topic.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The body came as one event object, not an array (answer with `id` too). */
    notifySingle: boolean
  }
}

function badBody (message: string): Error {
  return Object.assign(new Error(message), { statusCode: 400 })
}

const names = (logs: string[]): string => logs.map(log => log === BROADCAST ? 'the broadcast' : log).join(', ')

/**
 * The answer to a publish that reached some of its logs only: it says, per event, which
 * topics got it, so the publisher retries the rest alone rather than the whole request.
 */
function partialAnswer (err: PartialPublishError, single: boolean): Answer {
  const incomplete = err.unpublished.flatMap((logs, i) => logs.length === 0 ? [] : [i])
  const what = incomplete.map(i => {
    const event = single ? 'the event' : `body[${i}]`
    return err.published[i].length === 0 ? `${event} did not reach ${names(err.unpublished[i])}` : `${event} reached ${names(err.published[i])} but not ${names(err.unpublished[i])}`
  }).join('; ')
  const message = `published in part (${err.message}): ${what}; a retry of this request would deliver again what was published: publish the rest alone`
  return {
    statusCode: 503,
    body: { ...errorBody(503, message), ids: err.ids, published: err.published, unpublished: err.unpublished },
    sent: 'partial'
  }
}

export default async function notifyRoute (app: FastifyInstance): Promise<void> {
  const fastify = app.withTypeProvider<TypeBoxTypeProvider>()
  const cfg = fastify.config
  const Topic = Type.String({ minLength: 1, maxLength: cfg.MAX_TOPIC_LENGTH, pattern: TOPIC_CHARS.source })
  const Event = Type.Object({
    topic: Type.Optional(Type.Union([Topic, Type.Array(Topic, { minItems: 1, maxItems: cfg.MAX_TOPICS_PER_STREAM })])),
    event: Type.Optional(Type.String({ pattern: eventNamePattern(cfg.MAX_EVENT_NAME_LENGTH) })),
    data: Type.Unknown()
  }, { additionalProperties: false })
  const Body = Type.Array(Event, { minItems: 1, maxItems: cfg.MAX_BATCH })
  // The answers, serialized by fast-json-stringify rather than JSON.stringify. The auth and
  // limits plugins add theirs (401, 403, 429, 503 under pressure) when they are on.
  const Id = Type.Union([Type.String(), Type.Null()])
  // A publish that reached some logs only: per event, its id and its topics that got it or not.
  const Partial = Type.Object({
    statusCode: Type.Integer(),
    error: Type.String(),
    message: Type.String(),
    ids: Type.Array(Id),
    published: Type.Array(Type.Array(Type.String())),
    unpublished: Type.Array(Type.Array(Type.String()))
  })
  const Accepted = Type.Object({
    id: Type.Optional(Id),
    ids: Type.Array(Id),
    fanout: Type.Union([Type.Literal('cluster'), Type.Literal('local')])
  }, {
    description: 'Accepted: `id` (one event only) and `ids`, one per event in order, and `fanout`: `cluster` (every instance delivers it) or ' +
      '`local` (Redis is not reachable or not configured: this instance\'s clients got it, the others get it once Redis is back, and the ids are null).',
    headers: { 'idempotent-replayed': Type.Literal('true', { description: 'This is the first answer to this Idempotency-Key, replayed: nothing was published again' }) }
  })
  const response = {
    202: Accepted,
    400: errorResponse('The body or a header is wrong: a schema violation (`body[2].topic must be ...`, `body has an unknown property \'topics\'`), ' +
      `JSON that does not parse, is not UTF-8, nests deeper than MAX_DATA_DEPTH (${cfg.MAX_DATA_DEPTH}) or has __proto__ keys, or a bad Idempotency-Key. Nothing was published.`),
    409: errorResponse('Idempotency-Key: a request with this key is under way (with Retry-After), or its outcome is unknown (it failed mid-publish, or its instance ' +
      'stopped): nothing was published. Use a new key to publish anyway.', RETRY_AFTER),
    // Only a token can lack a topic (checkTopics).
    ...(cfg.PUBLISH_AUTH === 'on' && { 403: errorResponse('The token does not grant publishing to a topic of the body: the message names it.') }),
    413: errorResponse(`The body is over BODY_LIMIT_BYTES (${cfg.BODY_LIMIT_BYTES}).`),
    415: errorResponse('The body is not application/json.'),
    422: errorResponse('Idempotency-Key: the key was used for a request with another body.'),
    503: Type.Union([Partial, ErrorBodySchema], {
      'x-response-description': 'Not published, retry later (Retry-After): Redis is down and PUBLISH_WHEN_DEGRADED=reject, the outbox is full (OUTBOX_MAX_EVENTS), ' +
        'the Idempotency-Key cannot be checked, or publishing through Redis failed mid-way (then it may or may not have been sent: retry with an Idempotency-Key). ' +
        'An event of several topics that reached some of them only (a master of a Redis Cluster down) gets the partial answer: per event its id and the topics that got it and did not.',
      headers: RETRY_AFTER
    })
  }
  // Documented only: the parser takes one event or an array (a batch) and validates a batch;
  // the handler checks the header itself, to answer with its own message.
  const documented = {
    body: Type.Union([Event, Body], { description: `One event, or an array of 1-${cfg.MAX_BATCH} (MAX_BATCH) published in order. No topic: a broadcast to every stream.` }),
    headers: Type.Object({
      'idempotency-key': Type.Optional(Type.String({
        pattern: IDEMPOTENCY_KEY.source,
        description: `Makes retries safe: a retry with the same key within IDEMPOTENCY_WINDOW_MS (${cfg.IDEMPOTENCY_WINDOW_MS} ms) gets the first answer and publishes nothing, on any instance`
      }))
    })
  }

  // Only JSON is an event; a text/plain body gets 415 rather than a confusing 400.
  fastify.removeContentTypeParser('text/plain')
  // JSON as Fastify parses it, but refused (400) when it is not UTF-8 (rather than read with
  // replacement characters) or nests so deep that encoding it would exhaust the stack.
  const parseJson = fastify.getDefaultJsonParser('error', 'error')
  fastify.removeContentTypeParser('application/json')
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const bytes = body as Buffer
    if (!isUtf8(bytes)) return done(badBody('body is not valid UTF-8'), undefined)
    if (nestsDeeper(bytes, cfg.MAX_DATA_DEPTH)) return done(badBody(`body nests deeper than ${cfg.MAX_DATA_DEPTH} levels (MAX_DATA_DEPTH)`), undefined)
    const text = bytes.toString('utf8')
    parseJson(request, text, (err, value) => {
      if (err === null) {
        // One event is a batch of one; remember which the caller sent.
        if (Array.isArray(value)) return done(null, value)
        request.notifySingle = true
        return done(null, [value])
      }
      if ((err as { code?: string }).code !== 'FST_ERR_CTP_INVALID_JSON_BODY') return done(err, undefined)
      // Say what is wrong: where the JSON breaks, or that it tries to set a prototype.
      try {
        JSON.parse(text)
        done(badBody('body must not have __proto__ or constructor.prototype keys'), undefined)
      } catch (syntax) {
        done(badBody(`body is not valid JSON: ${(syntax as Error).message}`), undefined)
      }
    })
  })
  // Anything but JSON: 415 naming what came.
  fastify.addContentTypeParser('*', (request, _payload, done) => {
    const type = request.headers['content-type']
    const message = `POST /notify takes content-type application/json, not ${type === undefined ? 'a body without content-type' : JSON.stringify(type.slice(0, 100))}`
    done(Object.assign(new Error(message), { statusCode: 415 }), undefined)
  })
  fastify.decorateRequest('notifySingle', false)

  async function publish (events: Outgoing[], single: boolean): Promise<Answer> {
    let result
    try {
      result = await fastify.bus.publish(events)
    } catch (err) {
      if (err instanceof PartialPublishError) return partialAnswer(err, single)
      if (err instanceof NotPublishedError) {
        return { statusCode: 503, body: errorBody(503, `publishing through Redis failed (${err.message}); ${single ? 'the event was' : 'the events were'} not published: a retry cannot deliver ${single ? 'it' : 'them'} twice`), sent: 'nothing', retryAfter: '1' }
      }
      return err instanceof DegradedError
        ? { statusCode: 503, body: errorBody(503, err.message), sent: 'nothing', retryAfter: '1' }
        : { statusCode: 503, body: errorBody(503, `publishing through Redis failed (${(err as Error).message}); the event may or may not have been sent`), sent: 'unknown', retryAfter: '1' }
    }
    fastify.metrics.published[result.fanout] += events.length
    return {
      statusCode: 202,
      body: single ? { id: result.ids[0], ids: result.ids, fanout: result.fanout } : { ids: result.ids, fanout: result.fanout }
    }
  }

  fastify.post('/notify', {
    config: {
      auth: 'publish',
      rateLimited: 'publishes',
      shedsLoad: true,
      swaggerTransform: ({ schema, url }) => ({ schema: { ...schema, ...documented }, url })
    },
    bodyLimit: cfg.BODY_LIMIT_BYTES,
    schema: {
      summary: 'Publish an event, or a batch',
      description: '`data` is any JSON value: a string is sent as-is (a multi-line string as several `data:` lines), anything else as JSON. ' +
        'A rejected request publishes nothing.',
      tags: ['publishing'],
      body: Body,
      response
    },
    attachValidation: true
  }, async (request, reply) => {
    const key = request.headers['idempotency-key']
    if (key !== undefined) {
      const bad = checkIdempotencyKey(key)
      if (bad !== null) return reply.code(400).send(errorBody(400, bad))
    }
    if (request.validationError !== undefined) {
      const message = describeError(request.validationError.validation, request.notifySingle, cfg.MAX_TOPIC_LENGTH, cfg.MAX_EVENT_NAME_LENGTH)
      return reply.code(400).send(errorBody(400, message))
    }
    const events: Outgoing[] = request.body.map(e => ({
      topics: e.topic === undefined ? null : Array.isArray(e.topic) ? [...new Set(e.topic)] : [e.topic],
      body: encodeBody(e.event, e.data)
    }))
    for (let i = 0; i < events.length; i++) {
      const denied = fastify.checkTopics(request, 'publish', events[i].topics)
      if (denied !== null) {
        const message = request.notifySingle ? denied : `body[${i}]: ${denied}`
        return reply.code(403).send(errorBody(403, message))
      }
    }
    const single = request.notifySingle
    // The header checked above: a single string.
    const answer = key === undefined
      ? await publish(events, single)
      : await fastify.idempotency.run(key as string, fingerprint(single, events), async () => await publish(events, single))
    if (answer.retryAfter !== undefined) reply.header('retry-after', answer.retryAfter)
    if (answer.replayed === true) reply.header('idempotent-replayed', 'true')
    // Built by publish() or replayed from it, or a refusal: shaped as the schemas above say.
    return reply.code(answer.statusCode as 202).send(answer.body as never)
  })
}
