import t from 'tap'
import { logRedaction, redactQuery } from '../../src/log-redaction.js'

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

t.test('the request serializer logs the URL redacted; credential headers are redacted paths', async t => {
  const logged = logRedaction.serializers.req({
    method: 'GET',
    url: '/stream?topic=a&token=abc.def.ghi',
    headers: { 'accept-version': '1', authorization: 'Bearer secret' },
    host: 'example.com',
    ip: '10.0.0.1',
    socket: { remotePort: 4242 }
  })
  t.same(logged, { method: 'GET', url: '/stream?topic=a&token=[Redacted]', version: '1', host: 'example.com', remoteAddress: '10.0.0.1', remotePort: 4242 })
  t.notOk(JSON.stringify(logged).includes('secret'), 'no header but the version is copied')
  for (const path of ['req.headers.authorization', 'req.headers.cookie', 'req.query.token']) t.ok(logRedaction.redact.includes(path), path)
})
