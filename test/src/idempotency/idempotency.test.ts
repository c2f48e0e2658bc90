// The logic of idempotent publishing, over the memory store: one publish per key, the
// first answer replayed, refusals that free the key or keep it, waiting for a request
// under way, a store that fails.
import t from 'tap'
import { checkIdempotencyKey, fingerprint, Idempotency, type Answer, type IdempotencyStore } from '../../../src/idempotency/idempotency.js'
import { MemoryIdempotencyStore } from '../../../src/idempotency/memory-store.js'

const accepted: Answer = { statusCode: 202, body: { ids: ['1-0'], fanout: 'local' } }

function setup (opts: { store?: IdempotencyStore, waitMs?: number } = {}): { idem: Idempotency, errors: string[] } {
  const errors: string[] = []
  const idem = new Idempotency({ store: opts.store ?? new MemoryIdempotencyStore(), windowMs: 60000, waitMs: opts.waitMs ?? 500, pollMs: 10, onError: (err, what) => errors.push(`${what}: ${err.message}`) })
  return { idem, errors }
}

/** A publish that counts its calls and answers `answer`. */
function counted (answer: Answer = accepted): { publish: () => Promise<Answer>, calls: () => number } {
  let calls = 0
  return { publish: async () => { calls++; return answer }, calls: () => calls }
}

t.test('checkIdempotencyKey: 1-128 visible ASCII characters, one header', async t => {
  for (const ok of ['a', 'x'.repeat(128), '550e8400-e29b-41d4-a716-446655440000', '!~{}"\\']) t.equal(checkIdempotencyKey(ok), null, JSON.stringify(ok))
  for (const bad of ['', 'x'.repeat(129), 'a b', 'a\tb', 'é', 'a\x7f', ['a', 'b']]) t.match(checkIdempotencyKey(bad), /Idempotency-Key header must be 1-128 visible ASCII/, JSON.stringify(bad))
})

t.test('fingerprint: the same events give the same digest; any difference another', async t => {
  const a = [{ topics: ['t'], body: 'data: 1\n\n' }]
  t.equal(fingerprint(true, a), fingerprint(true, [{ topics: ['t'], body: 'data: 1\n\n' }]))
  const others = [
    fingerprint(false, a),
    fingerprint(true, [{ topics: ['u'], body: 'data: 1\n\n' }]),
    fingerprint(true, [{ topics: null, body: 'data: 1\n\n' }]),
    fingerprint(true, [{ topics: ['t'], body: 'data: 2\n\n' }]),
    fingerprint(true, [{ topics: ['t', 'u'], body: 'data: 1\n\n' }]),
    fingerprint(true, [...a, ...a])
  ]
  t.equal(new Set([fingerprint(true, a), ...others]).size, others.length + 1)
})

t.test('a key publishes once: a retry gets the first answer, marked replayed', async t => {
  const { idem } = setup()
  const { publish, calls } = counted()
  const first = await idem.run('k', 'f', publish)
  t.same(first, accepted)
  const retry = await idem.run('k', 'f', publish)
  t.same(retry, { ...accepted, replayed: true })
  t.equal(calls(), 1)
  t.same(await idem.run('other', 'f', publish), accepted, 'another key is another request')
  t.equal(calls(), 2)
})

t.test('the same key with another body: 422, nothing published', async t => {
  const { idem } = setup()
  const { publish, calls } = counted()
  await idem.run('k', 'f', publish)
  const res = await idem.run('k', 'g', publish)
  t.equal(res.statusCode, 422)
  t.match(res.body, { statusCode: 422, error: 'Unprocessable Entity', message: /different body/ })
  t.equal(calls(), 1)
})

t.test('a refusal that published nothing frees the key: the retry publishes', async t => {
  const { idem } = setup()
  const refused: Answer = { statusCode: 503, body: { message: 'Redis is unreachable' }, sent: 'nothing', retryAfter: '1' }
  t.same(await idem.run('k', 'f', async () => refused), refused)
  const { publish, calls } = counted()
  t.same(await idem.run('k', 'f', publish), accepted)
  t.equal(calls(), 1)
})

t.test('a publish of unknown outcome keeps the key: retries get 409 saying so, and publish nothing', async t => {
  const { idem } = setup()
  const failed: Answer = { statusCode: 503, body: { message: 'publishing through Redis failed (timeout)' }, sent: 'unknown', retryAfter: '1' }
  t.same(await idem.run('k', 'f', async () => failed), failed, 'the first request gets its own answer')
  const { publish, calls } = counted()
  const retry = await idem.run('k', 'f', publish)
  t.equal(retry.statusCode, 409)
  t.match((retry.body as { message: string }).message, /failed 0 s ago while publishing \(publishing through Redis failed \(timeout\)\): its events may or may not have been sent/)
  t.equal(calls(), 0)
  t.equal((await idem.run('k', 'g', publish)).statusCode, 422, 'another body is still 422')
})

t.test('a publish that went out in part keeps its answer: retries get it (which topics got it) and publish nothing', async t => {
  const { idem } = setup()
  const partial: Answer = { statusCode: 503, body: { message: 'published in part', published: [['a']], unpublished: [['b']] }, sent: 'partial' }
  t.same(await idem.run('k', 'f', async () => partial), partial)
  const { publish, calls } = counted()
  t.same(await idem.run('k', 'f', publish), { statusCode: 503, body: partial.body, replayed: true })
  t.equal(calls(), 0)
})

t.test('a publish that throws keeps the key as unknown, and the error goes on', async t => {
  const { idem } = setup()
  await t.rejects(idem.run('k', 'f', async () => { throw new Error('boom') }), { message: 'boom' })
  const retry = await idem.run('k', 'f', counted().publish)
  t.equal(retry.statusCode, 409)
  t.match((retry.body as { message: string }).message, /\(boom\)/)
})

t.test('a retry while the first is under way waits for its answer', async t => {
  const { idem } = setup({ waitMs: 2000 })
  let release!: () => void
  const slow = idem.run('k', 'f', async () => { await new Promise<void>(resolve => { release = resolve }); return accepted })
  const { publish, calls } = counted()
  const retry = idem.run('k', 'f', publish)
  setTimeout(() => release(), 100)
  t.same(await slow, accepted)
  t.same(await retry, { ...accepted, replayed: true })
  t.equal(calls(), 0)
})

t.test('a retry while the first is under way takes the key when the first frees it', async t => {
  const { idem } = setup({ waitMs: 2000 })
  let release!: () => void
  const slow = idem.run('k', 'f', async () => { await new Promise<void>(resolve => { release = resolve }); return { statusCode: 503, body: {}, sent: 'nothing' } })
  const { publish, calls } = counted()
  const retry = idem.run('k', 'f', publish)
  setTimeout(() => release(), 100)
  t.equal((await slow).statusCode, 503)
  t.same(await retry, accepted)
  t.equal(calls(), 1)
})

t.test('a retry gives up waiting with 409 in progress and Retry-After', async t => {
  const { idem } = setup({ waitMs: 100 })
  let release!: () => void
  const slow = idem.run('k', 'f', async () => { await new Promise<void>(resolve => { release = resolve }); return accepted })
  const { publish, calls } = counted()
  const retry = await idem.run('k', 'f', publish)
  t.equal(retry.statusCode, 409)
  t.equal(retry.retryAfter, '1')
  t.match(retry.body, { error: 'Conflict', message: /in progress \(started 0 s ago\): nothing was published, retry later/ })
  t.equal(calls(), 0)
  release()
  await slow
})

t.test('a claim left pending for long (its instance died) is answered 409 at once: it may have published', async t => {
  const store = new MemoryIdempotencyStore()
  const { idem } = setup({ store, waitMs: 5000 })
  await store.claim('k', JSON.stringify({ state: 'pending', fingerprint: 'f', token: 'x', since: Date.now() - 120000 }), 60000)
  const started = Date.now()
  const res = await idem.run('k', 'f', counted().publish)
  t.ok(Date.now() - started < 1000, 'without waiting')
  t.equal(res.statusCode, 409)
  t.match((res.body as { message: string }).message, /started 120 s ago and never answered/)
})

t.test('a store that cannot claim: 503, nothing published; one that cannot store the answer is reported', async t => {
  const down: IdempotencyStore = { claim: async () => { throw new Error('Connection is closed.') }, replace: async () => true }
  const { publish, calls } = counted()
  const res = await setup({ store: down }).idem.run('k', 'f', publish)
  t.equal(res.statusCode, 503)
  t.equal(res.retryAfter, '1')
  t.match((res.body as { message: string }).message, /cannot be checked \(Connection is closed\.\): nothing was published/)
  t.equal(calls(), 0)

  const memory = new MemoryIdempotencyStore()
  const flaky: IdempotencyStore = { claim: memory.claim.bind(memory), replace: async () => { throw new Error('timeout') } }
  const { idem, errors } = setup({ store: flaky, waitMs: 50 })
  t.same(await idem.run('k', 'f', publish), accepted, 'the publish is answered anyway')
  t.same(errors, ['storing the answer of an Idempotency-Key: timeout'])
  t.equal((await idem.run('k', 'f', publish)).statusCode, 409, 'the key stays taken: a retry publishes nothing')
  t.equal(calls(), 1)
})
