// README and .env.example keep in step with the settings the service reads.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { configSchema, loadConfig, splitList } from '../../src/config.js'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
const envExample = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8')

t.test('every setting is in the README table and in .env.example', async t => {
  for (const name of Object.keys(configSchema.properties)) {
    t.match(readme, new RegExp('^\\| `' + name + '` \\|', 'm'), `README documents ${name}`)
    t.match(envExample, new RegExp('^#? ?' + name + '=', 'm'), `.env.example lists ${name}`)
  }
})

t.test('the README table gives each setting the default the schema has', async t => {
  for (const [name, schema] of Object.entries(configSchema.properties)) {
    const row = readme.match(new RegExp('^\\| `' + name + '` \\| ([^|]*) \\|', 'm'))
    const value: unknown = (schema as { default?: unknown }).default
    t.equal(row?.[1], value === '' ? '(empty)' : '`' + String(value) + '`', `default of ${name}`)
  }
})

t.test('.env.example names nothing the service does not read', async t => {
  const known = new Set(Object.keys(configSchema.properties))
  for (const [, name] of envExample.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)) {
    t.ok(known.has(name), `${name} is a setting`)
  }
})

t.test('splitList: comma-separated, trimmed, blanks dropped', async t => {
  t.same(splitList(' a, b ,,c ,'), ['a', 'b', 'c'])
  t.same(splitList(''), [])
  t.same(splitList(' , '), [])
})

t.test('loadConfig: the defaults, values over the environment, strings read as numbers', async t => {
  const defaults = loadConfig({ env: false })
  t.match(defaults, { PORT: 3000, HOST: '127.0.0.1', REDIS_URL: '', HISTORY_SIZE: 1000, SUBSCRIBE_AUTH: 'off' })
  t.equal(loadConfig({ env: false, values: { PORT: '8080' } }).PORT, 8080, 'as the environment gives it, a string')
  const before = process.env.RETRY_MS
  process.env.RETRY_MS = '4321'
  t.teardown(() => { if (before === undefined) delete process.env.RETRY_MS; else process.env.RETRY_MS = before })
  t.equal(loadConfig({ dotenv: false }).RETRY_MS, 4321, 'the environment is read')
  t.equal(loadConfig({ dotenv: false, values: { RETRY_MS: 10 } }).RETRY_MS, 10, 'values win over it')
  t.equal(loadConfig({ env: false }).RETRY_MS, 2000, 'env: false ignores it')
})

t.test('loadConfig: a bad value throws one line naming the variable', async t => {
  for (const [name, value] of [['PORT', 'abc'], ['PORT', 70000], ['HISTORY_SIZE', 0], ['REDIS_URL', 'http://x'], ['PUBLISH_WHEN_DEGRADED', 'maybe'], ['REDIS_PREFIX', 'a b'], ['HEARTBEAT_EVENT', 'a\nb'], ['PRESSURE_MAX_EVENT_LOOP_UTILIZATION', 2], ['JWT_JWKS_URL', 'ftp://idp/jwks'], ['JWT_JWKS_REFRESH_MS', 10]] as const) {
    let message = ''
    try { loadConfig({ env: false, values: { [name]: value } }) } catch (err) { message = (err as Error).message }
    t.match(message, name, `${name}=${JSON.stringify(value)} is named`)
    t.notMatch(message, /\n/, 'on one line')
  }
})

t.test('loadConfig: HEADERS_TIMEOUT_MS above REQUEST_TIMEOUT_MS is refused, equal is fine', async t => {
  t.throws(() => loadConfig({ env: false, values: { HEADERS_TIMEOUT_MS: 5000, REQUEST_TIMEOUT_MS: 1000 } }), { message: 'HEADERS_TIMEOUT_MS (5000) must not exceed REQUEST_TIMEOUT_MS (1000)' })
  t.equal(loadConfig({ env: false, values: { HEADERS_TIMEOUT_MS: 1000, REQUEST_TIMEOUT_MS: 1000 } }).HEADERS_TIMEOUT_MS, 1000)
})
