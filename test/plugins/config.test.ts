// The config plugin: the settings loaded by buildApp, as fastify.config.
import Fastify from 'fastify'
import t from 'tap'
import configPlugin from '../../plugins/config.js'
import { loadConfig } from '../../src/config.js'

t.test('decorates the instance with the settings it is given', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  const config = loadConfig({ env: false, values: { PORT: 1234 } })
  await app.register(configPlugin, { config })
  await app.ready()
  t.equal(app.config, config)
})

t.test('without settings it fails naming the option', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(configPlugin, {} as never) }, /^opts\.config should be the loaded settings/)
})
