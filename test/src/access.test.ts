// What a token's topic patterns allow.
import t from 'tap'
import { EVERY, NONE, OPEN, refusedTopics, TopicPatterns, type Access } from '../../src/access.js'

t.test('topic patterns: exact names, a trailing * as prefix, * alone as every topic', async t => {
  const p = new TopicPatterns(['user:42', 'orders:*', 'ab*'])
  t.ok(p.matches('user:42'))
  t.notOk(p.matches('user:420'), 'an exact name is not a prefix')
  t.notOk(p.matches('user:4'))
  t.ok(p.matches('orders:1'))
  t.ok(p.matches('orders:'), 'the * may match nothing')
  t.ok(p.matches('orders:1:items'))
  t.notOk(p.matches('orders'), 'orders:* needs the colon')
  t.notOk(p.matches('xorders:1'), 'a prefix matches at the start only')
  t.ok(p.matches('ab'))
  t.ok(p.matches('abc'))
  t.notOk(p.all)
  t.ok(new TopicPatterns(['x', '*']).all)
  t.ok(new TopicPatterns(['*']).matches('anything/at:all'))
  const odd = new TopicPatterns(['', '**', 'a*b'])
  t.notOk(odd.matches(''), 'an empty pattern matches nothing')
  t.notOk(odd.matches('a'), 'only a trailing * is special')
  t.notOk(odd.matches('axb'))
  t.notOk(new TopicPatterns([]).matches('x'))
})

const access = (who: Access['who'], subscribe: string[], publish: string[]): Access =>
  ({ who, subscribe: new TopicPatterns(subscribe), publish: new TopicPatterns(publish), expiresAt: null })

t.test('refusedTopics: null when every topic is allowed, else the first one that is not', async t => {
  const token = access('jwt', ['orders:*', 'user:42'], ['orders:*'])
  t.equal(refusedTopics(token, 'subscribe', ['orders:1', 'user:42']), null)
  t.equal(refusedTopics(token, 'subscribe', ['orders:1', 'user:43', 'user:44']), 'this token may not read topic "user:43"')
  t.equal(refusedTopics(token, 'publish', ['orders:1']), null)
  t.equal(refusedTopics(token, 'publish', ['user:42']), 'this token may not publish to topic "user:42"', 'reading a topic is not publishing to it')
  t.equal(refusedTopics(token, 'subscribe', []), null, 'a stream of broadcasts only')
})

t.test('refusedTopics: a broadcast needs the publish pattern "*"', async t => {
  t.equal(refusedTopics(access('jwt', [], ['orders:*']), 'publish', null), 'this token may not publish a broadcast (an event without topic needs the publish pattern "*")')
  t.equal(refusedTopics(access('token', [], ['*']), 'publish', null), null)
  t.equal(refusedTopics(OPEN, 'publish', null), null, 'auth off: anything goes')
  t.equal(refusedTopics(OPEN, 'subscribe', ['any']), null)
})

t.test('refusedTopics: a stream without a token is told it is one', async t => {
  t.equal(refusedTopics(access('anonymous', ['news'], []), 'subscribe', ['news', 'user:1']), 'a stream without a token (PUBLIC_TOPICS) may not read topic "user:1"')
})

t.test('EVERY matches every topic, NONE none', async t => {
  t.ok(EVERY.all)
  t.ok(EVERY.matches('x'))
  t.notOk(NONE.all)
  t.notOk(NONE.matches('x'))
})
