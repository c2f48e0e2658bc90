// The settings, loaded by buildApp before Fastify exists, as `fastify.config`.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../src/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export interface ConfigPluginOptions {
  config: Config
}

async function config (fastify: FastifyInstance, opts: ConfigPluginOptions): Promise<void> {
  if (typeof opts.config !== 'object' || opts.config === null) throw new Error('opts.config should be the loaded settings (loadConfig())')
  fastify.decorate('config', opts.config)
}

export default fp(config, { name: 'config', fastify: '5.x' })
