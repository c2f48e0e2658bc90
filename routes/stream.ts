// GET /stream: one SSE stream for one or more topics, plus broadcasts.
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { decodeCursor, streamLogs } from '../src/cursor.js'
import { atExpiry } from '../src/expiry.js'
import { encodeBody, encodeComment, encodeFrame, encodeHeartbeat, encodePreamble, encodeRefusal, encodeReset, encodeStreamHead, STREAM_HEADERS } from '../src/frame.js'
import { Client } from '../src/hub.js'
import { AS_STREAM, errorBody, errorResponse, retryAfterSeconds, RETRY_AFTER, shutdownRefusal, type TemporaryRefusal } from '../src/refusal.js'
import { resume, type DrainableSink } from '../src/resume.js'
import { parseTopics, TOPIC_CHARS, topicRule } from '../src/topic.js'

type Query = Record<string, string | string[] | undefined>

export default async function streamRoute (fastify: FastifyInstance): Promise<void> {
  const cfg = fastify.config
  const { hub, bus } = fastify
  const preamble = encodePreamble(cfg.RETRY_MS)
  const atCapacity: TemporaryRefusal = { statusCode: 503, reason: 'max_clients', retryAfterMs: cfg.RETRY_MS, message: `this instance is at MAX_CLIENTS (${cfg.MAX_CLIENTS}) streams` }
  const shutdown = shutdownRefusal(cfg.RETRY_MS)
  const tokenExpired = encodeComment('token expired')

  // The frames as src/frame.ts writes them, for the API docs.
  const retry = Number(retryAfterSeconds(cfg.RETRY_MS)) * 1000
  const streamExample = [
    encodePreamble(cfg.RETRY_MS),
    encodeFrame('1732600000000-0', encodeBody('created', { id: 42 })),
    encodeFrame('1732600000000-1', encodeBody(undefined, 'no event name,\nin two lines')),
    encodeHeartbeat(cfg.HEARTBEAT_EVENT)
  ].join('')
  const inline = (frame: Buffer): string => '`' + frame.toString().trim().replace(/\n/g, '` `') + '`'
  const frames = [
    `The stream: \`retry: ${cfg.RETRY_MS}\` and a comment at once, then one frame per event: \`id:\` (an opaque cursor: send it back as Last-Event-ID), ` +
      '`event:` when the event has a name, and one `data:` line per line of its payload (a string as-is, anything else as JSON); nothing a publisher sends can end a frame or add a field.',
    `Idle for HEARTBEAT_INTERVAL_MS (${cfg.HEARTBEAT_INTERVAL_MS} ms): ` +
      (cfg.HEARTBEAT_EVENT === '' ? 'a `: heartbeat` comment.' : `an event \`${cfg.HEARTBEAT_EVENT}\` with empty data and no id (HEARTBEAT_EVENT).`),
    `When history cannot cover a resume: ${inline(encodeReset(null, 'history', 'orders'))} (refetch that topic's state), with an \`id:\` when nothing follows it.`,
    'A temporary refusal (at MAX_CLIENTS, under pressure, rate-limited, shutting down) to a request whose Accept names text/event-stream (EventSource\'s), instead of the 429 or 503: ' +
      `${inline(encodeRefusal(retry, 503, 'max_clients'))}, then the end; \`reason\` is max_clients, pressure, rate_limit or shutdown, and EventSource retries after \`retry:\` by itself.`,
    'A stream ends (and EventSource resumes by itself) when its instance shuts down, its client cannot keep up (CLIENT_BUFFER_BYTES), or its token expires.'
  ].join('\n\n')
  const Topic = Type.String({ minLength: 1, maxLength: cfg.MAX_TOPIC_LENGTH, pattern: TOPIC_CHARS.source })
  // Documented only: the handler parses the query and header itself, to name what is wrong.
  const documented = {
    querystring: Type.Object({
      topic: Type.Optional(Type.Array(Topic, {
        maxItems: cfg.MAX_TOPICS_PER_STREAM,
        description: `Repeatable (?topic=a&topic=b), at most MAX_TOPICS_PER_STREAM (${cfg.MAX_TOPICS_PER_STREAM}), each ${topicRule(cfg.MAX_TOPIC_LENGTH)}. Every stream also gets broadcasts; none: broadcasts only.`
      })),
      lastEventId: Type.Optional(Type.String({ description: 'Resume after this id, for clients that cannot set the Last-Event-ID header (the header wins)' }))
    }, { description: `At most MAX_QUERY_PARAMS (${cfg.MAX_QUERY_PARAMS}) parameters besides topic.` }),
    headers: Type.Object({
      'last-event-id': Type.Optional(Type.String({ description: 'Resume: the events after this id that history still holds are replayed, in order, before the live ones (EventSource sends it on reconnect)' }))
    })
  }
  const response = {
    200: {
      description: frames,
      headers: Object.fromEntries(Object.entries(STREAM_HEADERS).filter(([name]) => name !== 'content-type').map(([name, value]) => [name, Type.Literal(value)])),
      content: { 'text/event-stream': { schema: Type.String({ examples: [streamExample] }) } }
    },
    400: errorResponse(`Bad topic, too many topics or query parameters, or a Last-Event-ID this service did not send: the message says which. Topics: ${topicRule(cfg.MAX_TOPIC_LENGTH)}.`),
    // Only a token can lack a topic (checkTopics).
    ...(cfg.SUBSCRIBE_AUTH === 'on' && { 403: errorResponse('The token does not grant reading a topic: the message names it.') }),
    503: errorResponse(`At MAX_CLIENTS (${cfg.MAX_CLIENTS}) streams, with Retry-After.${AS_STREAM}`, RETRY_AFTER)
  }

  fastify.get('/stream', {
    config: {
      auth: 'subscribe',
      rateLimited: 'streams',
      shedsLoad: true,
      sse: true,
      swaggerTransform: ({ schema, url }) => ({ schema: { ...schema, ...documented }, url })
    },
    schema: {
      summary: 'Read events (Server-Sent Events)',
      description: 'Open with `new EventSource(\'/stream?topic=orders\')`. Temporary refusals reach EventSource as a 200 stream that ends, so it retries by itself; ' +
        'permanent ones (400, 401, 403) stay errors: reopen with a fresh token and lastEventId.',
      tags: ['streams'],
      response
    }
  }, async (request, reply) => {
    const query = request.query as Query
    let params = 0
    for (const key in query) if (key !== 'topic') params += Array.isArray(query[key]) ? query[key].length : 1
    if (params > cfg.MAX_QUERY_PARAMS) {
      return reply.code(400).send(errorBody(400, `at most ${cfg.MAX_QUERY_PARAMS} query parameters besides topic, got ${params}`))
    }
    const topics = parseTopics(query.topic, cfg.MAX_TOPICS_PER_STREAM, cfg.MAX_TOPIC_LENGTH)
    if (typeof topics === 'string') return reply.code(400).send(errorBody(400, topics))
    let lastId = request.headers['last-event-id'] ?? query.lastEventId
    if (Array.isArray(lastId)) lastId = lastId[0]
    if (lastId === '') lastId = undefined
    const positions = lastId === undefined ? null : decodeCursor(lastId, streamLogs(topics).length)
    if (positions === null && lastId !== undefined) {
      return reply.code(400).send(errorBody(400, 'Last-Event-ID (or lastEventId) must be an id this service sent, like 1732600000000-0'))
    }
    const denied = fastify.checkTopics(request, 'subscribe', topics)
    if (denied !== null) return reply.code(403).send(errorBody(403, denied))
    // Checked last, right before the stream opens: close() may have begun during the hooks.
    if (fastify.refusals.closing) return reply.refuseForNow(shutdown)
    if (hub.size >= cfg.MAX_CLIENTS) return reply.refuseForNow(atCapacity)

    // Written straight to the socket, delimited by the connection's end: no chunked
    // encoding, so one frame (or one turn's frames) is one plain write.
    reply.hijack()
    const socket = request.raw.socket as DrainableSink & typeof request.raw.socket
    socket.setNoDelay(true)
    // The head goes out once the stream's topics are subscribed: from then on nothing is missed.
    const opening = Buffer.concat([Buffer.from(encodeStreamHead(reply.getHeaders()), 'latin1'), preamble])
    const client = new Client(socket, topics, opening)
    socket.on('close', () => hub.remove(client))
    const expiresAt = request.access?.expiresAt ?? null
    // The stream ends with its token; the client reconnects with a fresh one and resumes.
    if (expiresAt !== null) socket.on('close', atExpiry(expiresAt, () => hub.close(client, tokenExpired)))
    if (positions === null) {
      hub.add(client)
      return
    }
    const failure = await resume(hub, bus, client, socket, positions, fastify.metrics.resumes)
    if (failure !== null) request.log.warn({ err: failure.message }, 'history unavailable: stream goes live without replay')
  })
}
