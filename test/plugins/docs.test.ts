// The API docs against the app: every route is in the OpenAPI document with its methods,
// and every answer it documents is one a real request gets, under an open configuration
// and one with auth and rate limits on. /docs serves its page; API_DOCS=off removes it.
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { encodeBody } from '../../src/frame.js'
import { fingerprint } from '../../src/idempotency/idempotency.js'
import { errorBody } from '../../src/refusal.js'
import { openStream, requestDuringClose, startInstance } from '../helpers/instance.js'
import { SECRET, sign } from '../helpers/jwt.js'

interface OpenApi {
  openapi: string
  paths: Record<string, Record<string, { responses: Record<string, { description: string, headers?: Record<string, unknown> }> }>>
}

/** The app's routes, from Fastify's own route tree: "GET /stream", ... */
function routesOf (app: FastifyInstance): string[] {
  const routes: string[] = []
  const stack: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([│ ]*)[└├]── (.+?)(?: \(([A-Z, ]+)\))?$/.exec(line)
    if (match === null) continue
    const depth = match[1].length / 4
    stack[depth] = (depth === 0 ? '' : stack[depth - 1]) + match[2]
    for (const method of match[3]?.split(', ') ?? []) routes.push(`${method} ${stack[depth]}`)
  }
  return routes
}

async function documentOf (url: string): Promise<OpenApi> {
  const res = await fetch(`${url}/docs/json`)
  t.equal(res.status, 200, 'GET /docs/json')
  return await res.json() as OpenApi
}

/** "GET /stream 400", ... for every documented answer. */
function answersOf (doc: OpenApi): string[] {
  return Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).flatMap(([method, op]) => Object.keys(op.responses).map(status => `${method.toUpperCase()} ${path} ${status}`)))
}

const TOKEN = 'publisher-token-0123456789'
const OPEN = { MAX_CLIENTS: 1, BODY_LIMIT_BYTES: 1024 }
// Shedding on (documented) but never reached: a busy machine must not turn a probe into a 503.
const GUARDED = {
  ...OPEN,
  SUBSCRIBE_AUTH: 'on',
  PUBLISH_AUTH: 'on',
  JWT_SECRET: SECRET,
  PUBLISH_TOKENS: TOKEN,
  SUBSCRIBE_TOKEN_QUERY: 'off',
  RATE_LIMIT_STREAMS: 1,
  // 422 takes two publishes.
  RATE_LIMIT_PUBLISH: 2,
  PRESSURE_MAX_RSS_BYTES: 2 ** 50
}

interface Answer { status: number, headers: Headers, body: unknown }
interface World { config: Record<string, unknown>, guarded: boolean, pub: Record<string, string>, sub: (topic: string) => Record<string, string> }
/** A real request (on an instance of its own) that should get the answer it is named after. */
type Probe = (t: Test, w: World) => Promise<Answer>

async function answer (res: Response): Promise<Answer> {
  const text = await res.text()
  let body: unknown = text
  try { body = JSON.parse(text) } catch {}
  return { status: res.status, headers: res.headers, body }
}

async function request (t: Test, w: World, path: string, init: RequestInit = {}): Promise<Answer> {
  const { url } = await startInstance(t, w.config)
  return await answer(await fetch(`${url}${path}`, init))
}

function publish (t: Test, w: World, body: string, headers: Record<string, string> = {}): Promise<Answer> {
  return request(t, w, '/notify', { method: 'POST', headers: { 'content-type': 'application/json', ...w.pub, ...headers }, body })
}

/** The request sent while the instance closes. */
function duringClose (method: string, path: string): Probe {
  return async (t, w) => {
    const { app, url } = await startInstance(t, w.config)
    const body = method === 'POST' ? '{"data":"x"}' : ''
    const raw = await requestDuringClose(app, url, `${method} ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`, w.pub)
    const [head, text] = raw.split('\r\n\r\n')
    return { status: Number(head.slice(9, 12)), headers: new Headers(), body: JSON.parse(text) }
  }
}

/** The request after `limit` from the same address. */
async function overLimit (t: Test, w: World, limit: unknown, path: string, init: RequestInit = {}): Promise<Answer> {
  const { url } = await startInstance(t, w.config)
  for (let i = 0; i < Number(limit); i++) await (await fetch(`${url}${path}`, init)).text()
  return await answer(await fetch(`${url}${path}`, init))
}

const open: Record<string, Probe> = {
  'GET /stream 200': async (t, w) => {
    const { url } = await startInstance(t, w.config)
    const c = await openStream(t, `${url}/stream?topic=a`, w.sub('a'))
    c.close()
    return { status: c.status, headers: new Headers(), body: null }
  },
  'GET /stream 400': (t, w) => request(t, w, '/stream?topic=a%20b', { headers: w.sub('a') }),
  'GET /stream 503': duringClose('GET', '/stream'),
  'POST /notify 202': (t, w) => publish(t, w, '{"topic":"a","data":1}'),
  'POST /notify 400': (t, w) => publish(t, w, '{"topics":"a","data":1}'),
  'POST /notify 409': async (t, w) => {
    // The first request with the key failed mid-publish (as when Redis stops answering).
    const { app, url } = await startInstance(t, w.config)
    const events = [{ topics: ['a'], body: encodeBody(undefined, 1) }]
    await app.idempotency.run('k1', fingerprint(true, events), async () => ({ statusCode: 503, body: errorBody(503, 'Redis timed out'), sent: 'unknown' }))
    return await answer(await fetch(`${url}/notify`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'k1', ...w.pub }, body: '{"topic":"a","data":1}' }))
  },
  'POST /notify 413': (t, w) => publish(t, w, JSON.stringify({ data: 'x'.repeat(2000) })),
  'POST /notify 415': (t, w) => request(t, w, '/notify', { method: 'POST', headers: { 'content-type': 'text/plain', ...w.pub }, body: 'hi' }),
  'POST /notify 422': async (t, w) => {
    const { url } = await startInstance(t, w.config)
    const send = async (data: number): Promise<Answer> => await answer(await fetch(`${url}/notify`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'k2', ...w.pub }, body: JSON.stringify({ topic: 'a', data })
    }))
    t.equal((await send(1)).status, 202)
    return await send(2)
  },
  'POST /notify 503': duringClose('POST', '/notify'),
  'GET /health 200': (t, w) => request(t, w, '/health'),
  'GET /health 503': duringClose('GET', '/health'),
  'GET /metrics 200': (t, w) => request(t, w, '/metrics'),
  'GET /metrics 503': duringClose('GET', '/metrics'),
  'GET / 200': (t, w) => request(t, w, '/'),
  'GET / 503': duringClose('GET', '/'),
  'GET /demo 200': (t, w) => request(t, w, '/demo'),
  'GET /demo 503': duringClose('GET', '/demo')
}

const guarded: Record<string, Probe> = {
  ...open,
  'GET /stream 401': (t, w) => request(t, w, '/stream?topic=a'),
  'GET /stream 403': (t, w) => request(t, w, '/stream?topic=b', { headers: w.sub('a') }),
  'GET /stream 429': (t, w) => overLimit(t, w, w.config.RATE_LIMIT_STREAMS, '/stream?topic=a'),
  'POST /notify 401': (t, w) => publish(t, w, '{"topic":"a","data":1}', { authorization: 'Bearer not-a-token-of-ours' }),
  'POST /notify 403': (t, w) => publish(t, w, '{"topic":"b","data":1}', { authorization: `Bearer ${sign({ sse: { publish: ['a'] } })}` }),
  'POST /notify 429': (t, w) => overLimit(t, w, w.config.RATE_LIMIT_PUBLISH, '/notify', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"data":1}' })
}

const worlds: Array<[string, World, Record<string, Probe>]> = [
  ['open', { config: OPEN, guarded: false, pub: {}, sub: () => ({}) }, open],
  ['auth and rate limits on', {
    config: GUARDED,
    guarded: true,
    pub: { authorization: `Bearer ${TOKEN}` },
    sub: topic => ({ authorization: `Bearer ${sign({ sse: { subscribe: [topic] } })}` })
  }, guarded]
]

for (const [name, world, probes] of worlds) {
  t.test(`${name}: the document lists every route of the app, with its methods, and nothing else`, async t => {
    const { app, url } = await startInstance(t, world.config)
    const doc = await documentOf(url)
    t.match(doc.openapi, /^3\.1\./)
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map(m => `${m.toUpperCase()} ${path}`))
    const routes = routesOf(app)
    t.ok(routes.includes('POST /notify') && routes.includes('GET /docs/json'), 'the route tree is read')
    for (const route of routes) {
      const [method, path] = route.split(' ')
      if (path.startsWith('/docs')) continue
      // Fastify answers HEAD for every GET route; the document lists the GET.
      const listed = method === 'HEAD' ? `GET ${path}` : route
      t.ok(documented.includes(listed), `${route} is documented`)
    }
    for (const route of documented) t.ok(routes.includes(route), `documented ${route} is a route`)
    t.same(documented.filter(r => r.split(' ')[1].startsWith('/docs')), [], 'the docs do not list themselves')
  })

  t.test(`${name}: every documented answer is one a real request gets, and every answer a probe gets is documented`, async t => {
    const { url } = await startInstance(t, world.config)
    const doc = await documentOf(url)
    t.same(answersOf(doc).sort(), Object.keys(probes).sort(), 'the documented answers are those the probes produce')
    for (const [key, probe] of Object.entries(probes)) {
      const status = Number(key.split(' ')[2])
      const got = await probe(t, world)
      t.equal(got.status, status, key)
      if (status >= 400) t.match(got.body, { statusCode: status, error: String, message: String }, `${key}: an error body`)
      if (status === 401) t.match(got.headers.get('www-authenticate'), /^Bearer realm=/, `${key}: WWW-Authenticate`)
      if (status === 429) t.match(got.headers.get('retry-after'), /^\d+$/, `${key}: Retry-After`)
    }
  })
}

t.test('the stream\'s documentation shows the frames this instance sends', async t => {
  const { url } = await startInstance(t, { HEARTBEAT_EVENT: 'ping', RETRY_MS: 1500 })
  const doc = await documentOf(url)
  const ok = doc.paths['/stream'].get.responses['200']
  t.match(ok.description, '`retry: 1500`')
  t.match(ok.description, 'an event `ping` with empty data', 'the named heartbeat of HEARTBEAT_EVENT')
  t.match(ok.description, '`event: reset` `data: {"reason":"history","topic":"orders"}`')
  t.match(ok.description, '`retry: 2000` `event: refused` `data: {"status":503,"reason":"max_clients","retryAfterMs":2000}`', 'the refusal stream, retry: in whole seconds')
  t.same(Object.keys(ok.headers ?? {}), ['cache-control', 'x-accel-buffering'])
})

t.test('/docs serves the page, its own scripts and styles, under a policy that allows nothing else', async t => {
  const { url } = await startInstance(t)
  for (const path of ['/docs', '/docs/']) {
    const res = await fetch(`${url}${path}`)
    t.equal(res.status, 200, path)
    t.match(res.headers.get('content-type'), /^text\/html/)
    t.match(res.headers.get('content-security-policy'), /default-src 'none'; script-src 'self';/)
    const html = await res.text()
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map(m => new URL(m[1], `${url}${path}`).href)
    t.ok(assets.length >= 4, 'scripts, styles and icons')
    for (const asset of assets) {
      t.ok(asset.startsWith(`${url}/docs/static/`), `${asset} is its own`)
      const file = await fetch(asset)
      t.equal(file.status, 200, asset)
      t.ok((await file.arrayBuffer()).byteLength > 0)
    }
  }
  const yaml = await fetch(`${url}/docs/yaml`)
  t.equal(yaml.status, 200)
  t.match(await yaml.text(), /^openapi: 3\.1\./m)
})

t.test('API_DOCS=off: /docs and /docs/json are 404, the API is unchanged', async t => {
  const { url } = await startInstance(t, { API_DOCS: 'off' })
  for (const path of ['/docs', '/docs/json', '/docs/yaml', '/docs/static/index.css']) t.equal((await fetch(`${url}${path}`)).status, 404, path)
  t.equal((await fetch(`${url}/health`)).status, 200)
})
