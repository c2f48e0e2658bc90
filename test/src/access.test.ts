// What a token's topic patterns allow.
import t from 'tap'
import { TopicPatterns } from '../../src/access.js'

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
