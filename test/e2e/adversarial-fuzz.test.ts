// Thousands of generated requests (seeded, so a failure can be replayed with FUZZ_SEED):
// every answer is 202 or a 4xx, never a 5xx or a dropped connection; afterwards the
// cluster still answers /health and delivers a known event exactly once.
import t from 'tap'
import { notify, openStream, startInstance } from '../helpers/instance.js'
import { SECRET, sign } from '../helpers/jwt.js'
import { TestRedis } from '../helpers/redis.js'

const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1e9)
t.comment(`FUZZ_SEED=${seed}`)

/** mulberry32: small, fast, seeded. */
function rng (s: number): () => number {
  return () => {
    s |= 0; s = s + 0x6D2B79F5 | 0
    let x = Math.imul(s ^ s >>> 15, 1 | s)
    x = x + Math.imul(x ^ x >>> 7, 61 | x) ^ x
    return ((x ^ x >>> 14) >>> 0) / 4294967296
  }
}
const random = rng(seed)
const int = (n: number): number => Math.floor(random() * n)
const pick = <T>(list: readonly T[]): T => list[int(list.length)]

const NASTY = ['\r', '\n', '\u0000', '*', '?', '{', '}', '[', ']', ' ', '"', '\\', ':', '/', '@', '\u2028', '\uffff', '\ud800', '\u00e9', '\u{1F600}', '%', ',', '\t']
function text (max: number): string {
  let s = ''
  const n = int(max)
  for (let i = 0; i < n; i++) s += random() < 0.7 ? String.fromCharCode(97 + int(26)) : pick(NASTY)
  return s
}
function value (depth: number): unknown {
  switch (int(depth > 6 ? 5 : 8)) {
    case 0: return null
    case 1: return random() * 1e6 - 5e5
    case 2: return text(40)
    case 3: return random() < 0.5
    case 4: return int(1e9)
    case 5: return Array.from({ length: int(5) }, () => value(depth + 1))
    case 6: return Object.fromEntries(Array.from({ length: int(4) }, () => [text(8), value(depth + 1)]))
    default: return int(2) === 0 ? [] : {}
  }
}
function topic (): unknown {
  switch (int(6)) {
    case 0: return `fz:${int(50)}`
    case 1: return text(20)
    case 2: return 'x'.repeat(int(300))
    case 3: return Array.from({ length: int(40) }, () => (random() < 0.8 ? `fz:${int(50)}` : text(10)))
    case 4: return value(3)
    default: return undefined
  }
}
function event (): Record<string, unknown> {
  const e: Record<string, unknown> = {}
  const t = topic()
  if (t !== undefined) e.topic = t
  if (random() < 0.4) e.event = random() < 0.5 ? `ev${int(9)}` : text(80)
  if (random() < 0.9) e.data = value(0)
  if (random() < 0.1) e[pick(['extra', '__proto__', 'constructor', 'id', 'retry'])] = value(2)
  return e
}
/** A body and its content-type: JSON from the generator, then maybe mangled at the byte level. */
function body (): { bytes: Buffer, type: string | undefined } {
  let json = random() < 0.7 ? JSON.stringify(event()) : JSON.stringify(Array.from({ length: int(random() < 0.05 ? 3000 : 6) }, event))
  if (random() < 0.05) json = '['.repeat(int(5000)) + json
  let bytes = Buffer.from(json)
  const mangle = int(8)
  if (mangle === 0) bytes = bytes.subarray(0, int(bytes.length + 1)) // truncated
  if (mangle === 1 || mangle === 2) {
    bytes = Buffer.from(bytes)
    for (let i = int(4); i >= 0; i--) if (bytes.length > 0) bytes[int(bytes.length)] = pick([0x00, 0x0a, 0x0d, 0x22, 0x5c, 0x7b, 0x5d, 0xff, 0xc0, 0xed, int(256)])
  }
  if (mangle === 3) bytes = Buffer.concat([bytes, Buffer.from(text(20))])
  const type = pick(['application/json', 'application/json', 'application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream', 'APPLICATION/JSON', undefined])
  return { bytes, type }
}
/** encodeURIComponent, but a lone surrogate goes out as the raw bytes a client could send. */
function encode (s: string): string {
  try {
    return encodeURIComponent(s)
  } catch {
    return [...Buffer.from(s, 'utf16le')].map(x => `%${x.toString(16).padStart(2, '0')}`).join('')
  }
}
function query (): string {
  const parts: string[] = []
  for (let i = int(random() < 0.05 ? 3000 : 6); i > 0; i--) {
    const key = pick(['topic', 'topic', 'topic', 'lastEventId', 'token', text(6)])
    const v = key === 'lastEventId' && random() < 0.3 ? `${int(1e13)}-${int(9)}` : key === 'topic' && random() < 0.6 ? `fz:${int(50)}` : text(30)
    parts.push(`${encode(key)}=${random() < 0.8 ? encode(v) : v.replace(/[^\x21-\x7e]/g, '')}`)
  }
  return parts.join('&')
}

async function pool<T> (items: T[], concurrency: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await run(items[next++])
  }))
}

const redis = await TestRedis.start()
t.teardown(() => redis.stop())

t.test('thousands of generated bodies and queries; then /health and a known event exactly once', async t => {
  const prefix = `fz${seed}:`
  const config = { REDIS_URL: redis.url, REDIS_PREFIX: prefix, BODY_LIMIT_BYTES: 262144, MAX_DATA_DEPTH: 32 }
  const [a, b] = await Promise.all([startInstance(t, config), startInstance(t, config)])
  const onA = await openStream(t, `${a.url}/stream?topic=sentinel:known&topic=fz:1`)
  const onB = await openStream(t, `${b.url}/stream?topic=sentinel:known`)

  const statuses = new Map<number, number>()
  const unexpected: string[] = []
  const count = (s: number): void => { statuses.set(s, (statuses.get(s) ?? 0) + 1) }
  const bodies = Array.from({ length: 3000 }, body)
  await pool(bodies, 16, async ({ bytes, type }) => {
    try {
      const res = await fetch(`${a.url}/notify`, { method: 'POST', headers: type === undefined ? {} : { 'content-type': type }, body: new Uint8Array(bytes) })
      count(res.status)
      const answer = await res.text()
      if (![202, 400, 413, 415].includes(res.status)) unexpected.push(`${res.status} ${answer.slice(0, 200)} for ${bytes.toString('latin1').slice(0, 200)}`)
      else if (res.status !== 202 && !/"message":"[^"]{8,}/.test(answer)) unexpected.push(`${res.status} without a message: ${answer.slice(0, 200)}`)
    } catch (err) {
      unexpected.push(`connection error ${(err as Error).message} for ${bytes.toString('latin1').slice(0, 200)}`)
    }
  })
  const queries = Array.from({ length: 800 }, query)
  await pool(queries, 16, async q => {
    const ac = new AbortController()
    try {
      const res = await fetch(`${a.url}/stream?${q}`, { signal: ac.signal, headers: random() < 0.3 ? { 'last-event-id': text(30).replace(/[^\x20-\x7e]/g, '') } : {} })
      count(res.status)
      if (res.status === 200) ac.abort()
      else await res.text()
      if (![200, 400, 431].includes(res.status)) unexpected.push(`${res.status} for /stream?${q.slice(0, 200)}`)
    } catch (err) {
      if ((err as Error).name !== 'AbortError') unexpected.push(`connection error ${(err as Error).message} for /stream?${q.slice(0, 200)}`)
    }
  })
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`)
  t.same(unexpected, [], 'every answer was 2xx or a 4xx with a message')
  t.ok((statuses.get(202) ?? 0) > 100, 'a good share of the bodies was valid (the generator is not all noise)')
  t.ok((statuses.get(400) ?? 0) > 500, 'and a good share was refused')

  for (const n of [a, b]) {
    const health = await fetch(`${n.url}/health`)
    t.equal(health.status, 200)
    t.match(await health.json(), { status: 'ok', mode: 'cluster' })
  }
  const sentinel = `known-${seed}`
  t.equal((await notify(a.url, { topic: 'sentinel:known', data: sentinel })).status, 202)
  for (const c of [onA, onB]) await c.until(x => x.events.some(e => e.data === sentinel), 5000, 'the known event')
  await new Promise(resolve => setTimeout(resolve, 300))
  t.equal(onA.events.filter(e => e.data === sentinel).length, 1, 'exactly once on the instance that took the fuzz')
  t.equal(onB.events.filter(e => e.data === sentinel).length, 1, 'exactly once on the other instance')
  t.notOk(onA.ended || onB.ended, 'the observers were never disconnected')
  await new Promise(resolve => setTimeout(resolve, 200))
  t.equal(a.app.hub.size, 1, 'no fuzzed stream was left open')
})

t.test('generated credentials never get through', async t => {
  const { app, url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', PUBLISH_AUTH: 'on', JWT_SECRET: SECRET, PUBLISH_TOKENS: 'the-real-publish-token-0123' })
  const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')
  const token = (): string => {
    switch (int(6)) {
      case 0: return text(60).replace(/[^\x21-\x7e]/g, 'x')
      case 1: return `${b64({ alg: pick(['none', 'None', 'HS256', 'RS256', 'ES256', '', 'HS512']), typ: 'JWT' })}.${b64({ sse: { subscribe: ['*'], publish: ['*'] } })}.${b64(text(32))}`
      case 2: return sign({ sse: { subscribe: ['*'], publish: ['*'] } }, { key: text(40) + 'x'.repeat(32) })
      case 3: return `${b64(text(20))}.${b64(text(20))}.${b64(text(20))}`
      case 4: return 'the-real-publish-token-012' + pick(['', '4', '3x', '33', '\u00b3'])
      default: return sign({ sse: { subscribe: ['*'], publish: ['*'] } }, { alg: 'none' })
    }
  }
  const statuses = new Set<number>()
  const accepted: string[] = []
  await pool(Array.from({ length: 600 }, token), 16, async tok => {
    const res = await notify(url, { data: 1 }, { authorization: `Bearer ${tok}` })
    statuses.add(res.status)
    if (res.status < 400) accepted.push(tok)
    const stream = await fetch(`${url}/stream?token=${encodeURIComponent(tok)}`)
    statuses.add(stream.status)
    await stream.text()
  })
  t.same([...statuses].sort(), [400, 401].filter(s => statuses.has(s)), `only refusals: ${[...statuses].join(', ')}`)
  t.same(accepted, [], 'nothing was accepted')
  t.equal(app.hub.size, 0)
})
