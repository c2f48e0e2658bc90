// GET /stream: one SSE stream for one or more topics, plus broadcasts.
import type { FastifyInstance } from 'fastify'
import { decodeCursor, streamLogs } from '../src/cursor.js'
import { atExpiry } from '../src/expiry.js'
import { encodeComment, encodePreamble, encodeStreamHead } from '../src/frame.js'
import { Client } from '../src/hub.js'
import { errorBody, shutdownRefusal, type TemporaryRefusal } from '../src/refusal.js'
import { resume, type DrainableSink } from '../src/resume.js'
import { parseTopics } from '../src/topic.js'

type Query = Record<string, string | string[] | undefined>

export default async function streamRoute (fastify: FastifyInstance): Promise<void> {
  const cfg = fastify.config
  const { hub, bus } = fastify
  const preamble = encodePreamble(cfg.RETRY_MS)
  const atCapacity: TemporaryRefusal = { statusCode: 503, reason: 'max_clients', retryAfterMs: cfg.RETRY_MS, message: `this instance is at MAX_CLIENTS (${cfg.MAX_CLIENTS}) streams` }
  const shutdown = shutdownRefusal(cfg.RETRY_MS)
  const tokenExpired = encodeComment('token expired')

  fastify.get('/stream', {
    config: { auth: 'subscribe', rateLimited: 'streams', shedsLoad: true, sse: true }
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
