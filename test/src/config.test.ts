// README and .env.example keep in step with the settings the service reads.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { configSchema } from '../../src/config.js'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
const envExample = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8')

t.test('every setting is in the README table and in .env.example', async t => {
  for (const name of Object.keys(configSchema.properties)) {
    t.match(readme, new RegExp('^\\| `' + name + '` \\|', 'm'), `README documents ${name}`)
    t.match(envExample, new RegExp('^#? ?' + name + '=', 'm'), `.env.example lists ${name}`)
  }
})

t.test('.env.example names nothing the service does not read', async t => {
  const known = new Set(Object.keys(configSchema.properties))
  for (const [, name] of envExample.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)) {
    t.ok(known.has(name), `${name} is a setting`)
  }
})
