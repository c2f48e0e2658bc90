import t from 'tap'
import { eventNamePattern, eventNameRule, parseTopics, topicRule } from '../../src/topic.js'

t.test('parseTopics: none, one or several topic parameters, duplicates dropped', async t => {
  t.same(parseTopics(undefined, 4, 16), [], 'no topic: broadcasts only')
  t.same(parseTopics('orders', 4, 16), ['orders'])
  t.same(parseTopics(['a', 'b', 'a'], 4, 16), ['a', 'b'])
  t.same(parseTopics(['A-z_0.9:@/x-'], 4, 16), ['A-z_0.9:@/x-'], 'every allowed character')
  t.same(parseTopics('x'.repeat(16), 4, 16), ['x'.repeat(16)], 'exactly the longest allowed')
})

t.test('parseTopics names what is wrong: too many, empty, too long, a bad character', async t => {
  t.equal(parseTopics(['a', 'b', 'c'], 2, 16), 'at most 2 topic parameters per stream, got 3')
  t.equal(parseTopics(['a', 'a', 'a'], 2, 16), 'at most 2 topic parameters per stream, got 3', 'parameters are counted as sent')
  t.equal(parseTopics('', 4, 16), `topic "" is invalid: ${topicRule(16)}`)
  t.equal(parseTopics('x'.repeat(17), 4, 16), `topic "${'x'.repeat(17)}" is invalid: ${topicRule(16)}`)
  for (const bad of ['a b', 'a,b', 'a*', 'a?', '{a}', 'a\nb', 'é']) {
    t.equal(parseTopics(['ok', bad], 4, 16), `topic ${JSON.stringify(bad)} is invalid: ${topicRule(16)}`, JSON.stringify(bad))
  }
  const huge = parseTopics('y'.repeat(5000), 4, 16) as string
  t.ok(huge.includes(`"${'y'.repeat(200)}"`) && huge.length < 300, 'a huge topic is quoted only in part')
})

t.test('the rules as error messages state them', async t => {
  t.equal(topicRule(128), '1-128 characters of A-Z a-z 0-9 _ . : @ / -')
  t.equal(eventNameRule(64), '1-64 characters of A-Z a-z 0-9 _ . : -')
})

t.test('eventNamePattern accepts 1 to maxLength of the event name characters, nothing else', async t => {
  const name = new RegExp(eventNamePattern(5))
  for (const ok of ['a', 'A_b.c', 'x:y-z', '12345']) t.ok(name.test(ok), ok)
  for (const bad of ['', '123456', 'a b', 'a\nb', 'a\rb', 'a/b', 'a@b', 'a,b', 'é']) t.notOk(name.test(bad), JSON.stringify(bad))
})
