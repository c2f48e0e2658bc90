import t from 'tap'
import { redactQuery } from '../../src/log-redaction.js'

t.test('redactQuery hides credential parameters however they are spelled', async t => {
  t.equal(redactQuery('/stream?topic=a&token=abc.def.ghi&x=1'), '/stream?topic=a&token=[Redacted]&x=1')
  t.equal(redactQuery('/stream?token=abc'), '/stream?token=[Redacted]')
  t.equal(redactQuery('/stream?%74oken=abc'), '/stream?%74oken=[Redacted]', 'an encoded name')
  t.equal(redactQuery('/stream?TOKEN=abc&access_token=def&jwt=g&authorization=h'), '/stream?TOKEN=[Redacted]&access_token=[Redacted]&jwt=[Redacted]&authorization=[Redacted]')
  t.equal(redactQuery('/stream?token'), '/stream?token=[Redacted]')
  t.equal(redactQuery('/stream?%E0%A4%A=1&token=x'), '/stream?%E0%A4%A=1&token=[Redacted]', 'a malformed name elsewhere does not stop it')
  t.equal(redactQuery('/stream?topic=token'), '/stream?topic=token', 'a value named token is not a token')
  t.equal(redactQuery('/health'), '/health')
})
