import t from 'tap'
import { errorBody, retryAfterSeconds } from '../../src/refusal.js'

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
