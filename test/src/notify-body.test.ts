import t from 'tap'
import { describeError, nestsDeeper, type ValidationError } from '../../src/notify-body.js'
import { eventNameRule, topicRule } from '../../src/topic.js'

const deeper = (json: string, max: number): boolean => nestsDeeper(Buffer.from(json), max)

t.test('nestsDeeper counts the open brackets of objects and arrays', async t => {
  t.notOk(deeper('{"a":[1]}', 2))
  t.ok(deeper('{"a":[1]}', 1))
  t.notOk(deeper('[[1],[2],{"x":[3]}]', 3), 'siblings do not add up')
  t.ok(deeper('[[[[]]]]', 3))
  t.notOk(deeper('1', 0), 'a scalar nests nowhere')
})

t.test('nestsDeeper skips brackets inside strings, escaped quotes included', async t => {
  t.notOk(deeper('{"a":"[[[[{{{{"}', 1))
  t.notOk(deeper('{"a":"\\"[[[["}', 1), 'an escaped quote does not end the string')
  t.ok(deeper('["\\\\",[[1]]]', 2), 'an escaped backslash does: the brackets after it count')
})

const err = (keyword: string, instancePath: string, params: Record<string, unknown> = {}, message?: string): ValidationError =>
  ({ keyword, instancePath, params, ...(message !== undefined && { message }) })

t.test('describeError names the field in the caller\'s terms: body, body[2], body.topic[1]', async t => {
  const extra = [err('additionalProperties', '/0', { additionalProperty: 'extra' })]
  t.equal(describeError(extra, true, 128), "body has an unknown property 'extra' (allowed: topic, event, data)", 'one event: its own body')
  t.equal(describeError(extra, false, 128), "body[0] has an unknown property 'extra' (allowed: topic, event, data)", 'a batch: its index')
  t.equal(describeError([err('required', '/2', { missingProperty: 'data' })], false, 128), "body[2] must have the property 'data'")
  t.equal(describeError([err('pattern', '/0/topic/1')], true, 40), `body.topic[1] must be ${topicRule(40)}`)
  t.equal(describeError([err('maxLength', '/3/topic')], false, 40), `body[3].topic must be ${topicRule(40)}`)
})

t.test('describeError reports the deepest error, and a union rather than its branches', async t => {
  const union = [err('type', '/0/topic', { type: 'string' }), err('type', '/0/topic', { type: 'array' }), err('anyOf', '/0/topic')]
  t.equal(describeError(union, true, 128), 'body.topic must be a topic name or an array of topic names')
  t.equal(describeError([err('anyOf', '/0/topic'), err('minLength', '/0/topic/0')], true, 128), `body.topic[0] must be ${topicRule(128)}`)
})

t.test('describeError: event names, counts, types, and whatever else Ajv says', async t => {
  t.equal(describeError([err('pattern', '/0/event')], true, 128), `body.event must be ${eventNameRule(64)}`, 'the default event name length')
  t.equal(describeError([err('pattern', '/1/event')], false, 128, 20), `body[1].event must be ${eventNameRule(20)}`)
  t.equal(describeError([err('maxItems', '', { limit: 3 })], false, 128), 'body must have at most 3 items')
  t.equal(describeError([err('minItems', '/0/topic', { limit: 1 })], true, 128), 'body.topic must have at least 1 item')
  t.equal(describeError([err('type', '', { type: 'array' })], false, 128), 'body must be an event object like {"topic": "orders", "data": {...}} or an array of them')
  t.equal(describeError([err('type', '/4', { type: 'object' })], false, 128), 'body[4] must be an event object like {"topic": "orders", "data": {...}}')
  t.equal(describeError([err('type', '/0/event', { type: 'string' })], true, 128), 'body.event must be string')
  t.equal(describeError([err('const', '/0/data', {}, 'must be equal to constant')], true, 128), 'body.data must be equal to constant')
  t.equal(describeError([err('const', '/0/data')], true, 128), 'body.data is invalid')
})
