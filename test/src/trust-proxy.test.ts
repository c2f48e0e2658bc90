import t from 'tap'
import { trustedProxies } from '../../src/trust-proxy.js'

t.test('no TRUST_PROXY: no address is a trusted proxy', async t => {
  for (const setting of ['', ' , ']) {
    const trust = trustedProxies(setting)
    t.notOk(trust('127.0.0.1', 0), JSON.stringify(setting))
  }
})

t.test('addresses, CIDRs and presets, comma-separated', async t => {
  const loopback = trustedProxies('loopback')
  t.ok(loopback('127.0.0.1', 0))
  t.ok(loopback('::1', 0))
  t.notOk(loopback('10.0.0.1', 0))
  const list = trustedProxies(' 10.0.0.0/8, 192.168.1.1 ')
  t.ok(list('10.2.3.4', 0))
  t.ok(list('192.168.1.1', 0))
  t.notOk(list('192.168.1.2', 0))
  t.notOk(list('127.0.0.1', 0))
})

t.test('a bad entry stops the start with a line naming TRUST_PROXY', async t => {
  t.throws(() => trustedProxies('loopback, not-an-address'), /^TRUST_PROXY: /)
  t.throws(() => trustedProxies('10.0.0.0/99'), /^TRUST_PROXY: /)
})
