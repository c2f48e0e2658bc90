import fastifyEnv from '@fastify/env'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { configSchema, type Config } from '../src/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export interface ConfigPluginOptions {
  /** Values that win over the environment (tests, embedding). */
  values?: Record<string, unknown>
  /** Read process.env (default true). */
  env?: boolean
  /** Read ./.env (default: same as env). */
  dotenv?: boolean
}

async function config (fastify: FastifyInstance, opts: ConfigPluginOptions): Promise<void> {
  const env = opts.env ?? true
  await fastify.register(fastifyEnv, {
    schema: structuredClone(configSchema),
    data: opts.values ?? {},
    env,
    dotenv: opts.dotenv ?? env
  })
  fastify.log.level = fastify.config.LOG_LEVEL
}

export default fp(config, { name: 'config', fastify: '5.x' })
