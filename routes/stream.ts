// GET /stream: one SSE stream for one or more topics, plus broadcasts.
import type { FastifyInstance } from 'fastify'
import type { OutgoingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import { TOPIC_CHARS } from '../src/config.js'
import { compareIds, isEventId } from '../src/event-id.js'
import { encodeComment, encodePreamble } from '../src/frame.js'
import { Client } from '../src/hub.js'
import { closeAtExpiry } from '../plugins/auth.js'

type Query = Record<string, string | string[] | undefined>

/** The stream's topics, or a message naming what is wrong with them. */
export function parseTopics (raw: string | string[] | undefined, maxTopics: number, maxLength: number): string[] | string {
  const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]
  if (list.length > maxTopics) return `at most ${maxTopics} topic parameters per stream, got ${list.length}`
  for (const topic of list) {
    if (topic.length === 0 || topic.length > maxLength || !TOPIC_CHARS.test(topic)) {
      return `topic ${JSON.stringify(topic.slice(0, 200))} is invalid: 1-${maxLength} characters of A-Z a-z 0-9 _ . : @ / -`
    }
  }
  return [...new Set(list)]
}

/** Waits until the socket took what it had, or closed. */
async function drained (socket: Socket): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => {
      socket.off('drain', done)
      socket.off('close', done)
      resolve()
    }
    socket.on('drain', done)
    socket.on('close', done)
  })
}

/** The status line and headers of a stream; headers set by other plugins (CORS) kept. */
function responseHead (headers: OutgoingHttpHeaders): string {
  let head = 'HTTP/1.1 200 OK\r\n'
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    for (const v of Array.isArray(value) ? value : [value]) head += `${name}: ${v}\r\n`
  }
  return head + 'content-type: text/event-stream\r\ncache-control: no-cache\r\n' +
    'x-accel-buffering: no\r\nconnection: close\r\n\r\n'
}

function resetFrame (last: string | null, reason: string): Buffer {
  const id = last === null ? '' : `id: ${last}\n`
  return Buffer.from(`${id}event: reset\ndata: ${JSON.stringify({ reason })}\n\n`)
}

export default async function streamRoute (fastify: FastifyInstance): Promise<void> {
  const cfg = fastify.config
  const { hub, bus } = fastify
  const preamble = encodePreamble(cfg.RETRY_MS)
  const retryAfter = String(Math.max(1, Math.ceil(cfg.RETRY_MS / 1000)))
  const tokenExpired = encodeComment('token expired')

  fastify.get('/stream', {
    onRequest: [fastify.limitStreams, fastify.authenticateSubscriber].filter(hook => hook !== null),
    config: { pressureHandler: fastify.shedLoad }
  }, async (request, reply) => {
    const query = request.query as Query
    let params = 0
    for (const key in query) if (key !== 'topic') params += Array.isArray(query[key]) ? query[key].length : 1
    if (params > cfg.MAX_QUERY_PARAMS) {
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: `at most ${cfg.MAX_QUERY_PARAMS} query parameters besides topic, got ${params}` })
    }
    const topics = parseTopics(query.topic, cfg.MAX_TOPICS_PER_STREAM, cfg.MAX_TOPIC_LENGTH)
    if (typeof topics === 'string') return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: topics })
    let lastId = request.headers['last-event-id'] ?? query.lastEventId
    if (Array.isArray(lastId)) lastId = lastId[0]
    if (lastId === '') lastId = undefined
    if (lastId !== undefined && !isEventId(lastId)) {
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: 'Last-Event-ID (or lastEventId) must be an id this service sent, like 1732600000000-0' })
    }
    const denied = fastify.checkTopics(request, 'subscribe', topics)
    if (denied !== null) return reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: denied })
    if (hub.size >= cfg.MAX_CLIENTS) {
      return reply.code(503).header('retry-after', retryAfter)
        .send({ statusCode: 503, error: 'Service Unavailable', message: `this instance is at MAX_CLIENTS (${cfg.MAX_CLIENTS}) streams` })
    }

    // The response is written straight to the socket, delimited by the connection's end:
    // no chunked encoding, so one frame (or one turn's frames) is one plain write.
    reply.hijack()
    const socket = request.raw.socket
    socket.setNoDelay(true)
    socket.write(responseHead(reply.getHeaders() as OutgoingHttpHeaders))
    socket.write(preamble)
    const client = new Client(socket, topics)
    socket.on('close', () => {
      client.closed = true
      hub.remove(client)
    })
    const expiresAt = request.access?.expiresAt ?? null // the subscriber hook always sets access
    if (expiresAt !== null) {
      // The stream ends with its token; the client reconnects with a fresh one and resumes.
      const cancel = closeAtExpiry(expiresAt, () => {
        hub.remove(client)
        client.closed = true
        socket.end(tokenExpired)
      })
      socket.on('close', cancel)
    }
    if (lastId === undefined) {
      hub.add(client)
      return
    }

    // Hold live events, replay what was missed, then send the held ones newer than it.
    hub.add(client, true)
    let cursor = lastId
    try {
      const { events, gap, last } = await bus.history(topics, lastId)
      // A signal, not an event: written as is, not counted as a replayed delivery.
      if (gap) socket.write(resetFrame(events.length === 0 ? last : null, 'history'))
      for (const d of events) {
        if (!hub.replay(client, d.frame)) await drained(socket)
        if (client.closed) return
      }
      if (events.length > 0) cursor = events[events.length - 1].id!
      else if (gap && last !== null && compareIds(last, cursor) > 0) cursor = last
    } catch (err) {
      request.log.warn({ err: (err as Error).message }, 'history unavailable: stream goes live without replay')
      socket.write(resetFrame(null, 'history-unavailable'))
    }
    hub.goLive(client, cursor)
  })
}
