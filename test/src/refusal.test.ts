import t from 'tap'
import { acceptsEventStream, answerRefusal, AS_STREAM, documentAnswer, errorBody, errorResponse, REFUSAL_REASONS, RETRY_AFTER, retryAfterSeconds, shutdownRefusal, type DocumentedRoute, type TemporaryRefusal } from '../../src/refusal.js'

t.test('errorBody has Fastify\'s error shape, with the status text of the code', async t => {
  t.same(errorBody(403, 'no'), { statusCode: 403, error: 'Forbidden', message: 'no' })
  t.equal(errorBody(429, 'x').error, 'Too Many Requests')
  t.equal(errorBody(503, 'x').error, 'Service Unavailable')
  t.equal(errorBody(599, 'x').error, 'Error', 'a code without a status text')
})

t.test('retryAfterSeconds: the reconnection delay rounded up to whole seconds, at least 1', async t => {
  t.equal(retryAfterSeconds(2000), '2')
  t.equal(retryAfterSeconds(2001), '3')
  t.equal(retryAfterSeconds(500), '1')
  t.equal(retryAfterSeconds(0), '1', 'never 0: that would invite an immediate retry')
})

t.test('acceptsEventStream: text/event-stream named in Accept, not a wildcard, not with q=0', async t => {
  t.ok(acceptsEventStream('text/event-stream'), 'what EventSource sends')
  t.ok(acceptsEventStream('application/json, Text/Event-Stream; charset=utf-8'))
  t.ok(acceptsEventStream('text/event-stream;q=0.5'))
  t.notOk(acceptsEventStream(undefined), 'no Accept')
  t.notOk(acceptsEventStream('*/*'), 'curl and fetch')
  t.notOk(acceptsEventStream('text/*'))
  t.notOk(acceptsEventStream('application/json'))
  t.notOk(acceptsEventStream('text/event-stream; q=0'), 'refused by the client')
  t.notOk(acceptsEventStream('text/event-stream;q=0.000'))
  t.notOk(acceptsEventStream('text/event-streams'))
})

const atCapacity: TemporaryRefusal = { statusCode: 503, reason: 'max_clients', retryAfterMs: 2000, message: 'full' }

t.test('answerRefusal: to an EventSource, a 200 stream with retry, a named event and its end', async t => {
  const answer = answerRefusal(atCapacity, 'text/event-stream')
  t.equal(answer.statusCode, 200)
  t.ok(answer.stream)
  t.same(answer.headers, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' })
  t.equal(answer.body.toString(), 'retry: 2000\nevent: refused\ndata: {"status":503,"reason":"max_clients","retryAfterMs":2000}\n\n')
})

t.test('answerRefusal: to anyone else, the status code, Retry-After and the error body', async t => {
  for (const accept of [undefined, '*/*', 'application/json']) {
    t.same(answerRefusal(atCapacity, accept), { statusCode: 503, headers: { 'retry-after': '2' }, body: errorBody(503, 'full'), stream: false }, String(accept))
  }
  const limited = answerRefusal({ statusCode: 429, reason: 'rate_limit', retryAfterMs: 41234, message: 'slow down' }, undefined)
  t.equal(limited.statusCode, 429)
  t.same(limited.headers, { 'retry-after': '42' })
})

t.test('answerRefusal: the retry line says what Retry-After would, in ms', async t => {
  const answer = answerRefusal({ statusCode: 429, reason: 'rate_limit', retryAfterMs: 41234, message: 'x' }, 'text/event-stream')
  t.match(answer.body.toString(), /^retry: 42000\n/, 'whole seconds, so a rate-limited client comes back after the reset')
  t.match(answer.body.toString(), /"status":429,"reason":"rate_limit","retryAfterMs":42000/)
  t.match(answerRefusal({ ...atCapacity, retryAfterMs: 0 }, 'text/event-stream').body.toString(), /^retry: 1000\n/, 'never 0: refused clients would hammer the instance')
})

t.test('shutdownRefusal: the 503 Fastify sent while closing, without Retry-After; to an EventSource, a stream', async t => {
  const refusal = shutdownRefusal(1500)
  t.same(answerRefusal(refusal, undefined), { statusCode: 503, headers: {}, body: errorBody(503, 'Service Unavailable'), stream: false })
  t.match(answerRefusal(refusal, 'text/event-stream').body.toString(), /^retry: 2000\nevent: refused\ndata: \{"status":503,"reason":"shutdown"/)
})

t.test('REFUSAL_REASONS lists every reason once', async t => {
  t.same([...REFUSAL_REASONS].sort(), ['max_clients', 'pressure', 'rate_limit', 'shutdown'])
})

t.test('documentAnswer adds an error answer to a route\'s schema, appending to a status it has, without changing a shared schema', async t => {
  const shared = { response: { 200: { type: 'string' } } }
  const a: DocumentedRoute = { schema: shared }
  documentAnswer(a, 503, 'at capacity', { 'retry-after': { type: 'string' } })
  documentAnswer(a, 503, 'shutting down')
  documentAnswer(a, 503, 'shutting down')
  const answer = (a.schema?.response as Record<string, Record<string, unknown>>)[503]
  t.equal(answer['x-response-description'], 'at capacity\n\nshutting down', 'appended once')
  t.same(Object.keys(answer.headers as object), ['retry-after'], 'headers kept')
  t.same(answer.required, ['statusCode', 'error', 'message'])
  t.same(shared, { response: { 200: { type: 'string' } } }, 'the shared schema is not changed')
  const hidden: DocumentedRoute = { schema: { hide: true } }
  documentAnswer(hidden, 503, 'x')
  t.same(hidden.schema, { hide: true }, 'a hidden route documents nothing')
  const bare: DocumentedRoute = {}
  documentAnswer(bare, 401, 'no token')
  t.same(Object.keys(bare.schema?.response as object), ['401'])
})

t.test('errorResponse: an ErrorBody schema with its description, headers only when there are some', async t => {
  t.same(Object.keys(errorResponse('x').properties), ['statusCode', 'code', 'error', 'message'])
  const headersOf = (schema: object): unknown => (schema as { headers?: unknown }).headers
  t.equal(headersOf(errorResponse('x')), undefined)
  t.same(Object.keys(headersOf(errorResponse('x', RETRY_AFTER)) as object), ['retry-after'])
  t.ok(AS_STREAM.includes('text/event-stream'))
})
