// CORS: EventSource (with credentials) and fetch from another origin, on the hijacked
// stream response as on ordinary replies, refusals included.
import t from 'tap'
import { buildApp } from '../../app.js'
import { notify, openStream, SseClient, startInstance } from '../helpers/instance.js'
import { SECRET, subscriberToken } from '../helpers/jwt.js'

const APP = 'https://app.example.com'

t.test('without CORS_ORIGINS no CORS header is sent', async t => {
  const { url } = await startInstance(t)
  const c = await openStream(t, `${url}/stream?topic=t`, { origin: APP })
  t.equal(c.headers['access-control-allow-origin'], undefined)
  const res = await notify(url, { data: 1 }, { origin: APP })
  t.equal(res.headers.get('access-control-allow-origin'), null)
})

t.test('listed origins get credentials on the stream, on refusals and on POST /notify; others get nothing', async t => {
  const { url } = await startInstance(t, { CORS_ORIGINS: `${APP}, http://localhost:5173`, SUBSCRIBE_AUTH: 'on', JWT_SECRET: SECRET })
  const c = await openStream(t, `${url}/stream?topic=t`, { origin: APP, cookie: `sse_token=${subscriberToken(['t'])}` })
  t.equal(c.status, 200)
  t.equal(c.headers['access-control-allow-origin'], APP, 'the hijacked stream carries the CORS headers')
  t.equal(c.headers['access-control-allow-credentials'], 'true')
  t.match(c.headers.vary, /origin/i)
  t.equal(c.headers['content-type'], 'text/event-stream', 'and still its own headers')
  await notify(url, { topic: 't', data: 'x' })
  await c.untilEvents(1)

  const dev = await SseClient.open(`${url}/stream?topic=t`, { origin: 'http://localhost:5173', authorization: `Bearer ${subscriberToken(['t'])}` })
  t.equal(dev.headers['access-control-allow-origin'], 'http://localhost:5173')
  dev.close()

  const refused = await fetch(`${url}/stream?topic=t`, { headers: { origin: APP } })
  t.equal(refused.status, 401)
  t.equal(refused.headers.get('access-control-allow-origin'), APP, 'a 401 is readable by the page, so it can fetch a token')
  await refused.text()

  const evil = await SseClient.open(`${url}/stream?topic=t`, { origin: 'https://evil.example', authorization: `Bearer ${subscriberToken(['t'])}` })
  t.equal(evil.headers['access-control-allow-origin'], undefined, 'an unlisted origin gets no CORS header')
  evil.close()
  const lookalike = await SseClient.open(`${url}/stream?topic=t`, { origin: `${APP}.evil.example`, authorization: `Bearer ${subscriberToken(['t'])}` })
  t.equal(lookalike.headers['access-control-allow-origin'], undefined, 'a listed origin is not a prefix')
  lookalike.close()

  const posted = await notify(url, { data: 1 }, { origin: APP })
  t.equal(posted.status, 202)
  t.equal(posted.headers.get('access-control-allow-origin'), APP)
})

t.test('preflights: POST /notify with a bearer token and an Idempotency-Key, a stream reconnecting with Last-Event-ID', async t => {
  const { url } = await startInstance(t, { CORS_ORIGINS: APP })
  const publish = await fetch(`${url}/notify`, {
    method: 'OPTIONS',
    headers: { origin: APP, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,idempotency-key' }
  })
  t.equal(publish.status, 204)
  t.equal(publish.headers.get('access-control-allow-origin'), APP)
  t.equal(publish.headers.get('access-control-allow-credentials'), 'true')
  t.match(publish.headers.get('access-control-allow-methods'), /POST/)
  t.match(publish.headers.get('access-control-allow-headers'), /authorization/)
  t.match(publish.headers.get('access-control-allow-headers'), /content-type/)
  t.match(publish.headers.get('access-control-allow-headers'), /idempotency-key/)
  t.equal(publish.headers.get('access-control-max-age'), '600')
  const resume = await fetch(`${url}/stream?topic=t`, {
    method: 'OPTIONS',
    headers: { origin: APP, 'access-control-request-method': 'GET', 'access-control-request-headers': 'last-event-id' }
  })
  t.equal(resume.status, 204)
  t.match(resume.headers.get('access-control-allow-headers'), /last-event-id/)
  const evil = await fetch(`${url}/notify`, {
    method: 'OPTIONS',
    headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' }
  })
  t.equal(evil.headers.get('access-control-allow-origin'), null)
})

t.test('CORS_ORIGINS=* allows any origin, without credentials', async t => {
  const { url } = await startInstance(t, { CORS_ORIGINS: '*' })
  const c = await openStream(t, `${url}/stream?topic=t`, { origin: 'https://anywhere.example' })
  t.equal(c.headers['access-control-allow-origin'], '*')
  t.equal(c.headers['access-control-allow-credentials'], undefined)
})

t.test('a bad CORS_ORIGINS stops the start, naming it', async t => {
  for (const value of ['app.example.com', 'https://app.example.com/path', '*, https://a.example']) {
    await t.rejects(async () => {
      const app = await buildApp({ env: false, logger: false, config: { CORS_ORIGINS: value } })
      await app.close()
    }, /CORS_ORIGINS/, value)
  }
})

t.test('a replayed answer says so to scripts on the allowed origin', async t => {
  const { url } = await startInstance(t, { CORS_ORIGINS: APP })
  const headers = { origin: APP, 'idempotency-key': 'k' }
  await notify(url, { data: 1 }, headers)
  const retry = await notify(url, { data: 1 }, headers)
  t.equal(retry.headers.get('idempotent-replayed'), 'true')
  t.match(retry.headers.get('access-control-expose-headers'), /idempotent-replayed/)
})
