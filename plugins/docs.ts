// API docs: an OpenAPI document generated from the routes' schemas (@fastify/swagger) at
// GET /docs/json (and /docs/yaml), browsable at GET /docs (@fastify/swagger-ui). The
// plugins that refuse requests add their answers to the routes they hook (documentAnswer
// in src/refusal.ts), so each answer is documented where it is made. API_DOCS=off: none of it.
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { securitySchemes } from './auth.js'

// The project's package.json, above plugins/ (tsx) and dist/plugins/ (npm start, the image).
const PACKAGE = ['../package.json', '../../package.json'].map(p => fileURLToPath(new URL(p, import.meta.url))).find(p => existsSync(p))

async function docs (fastify: FastifyInstance): Promise<void> {
  const cfg = fastify.config
  if (cfg.API_DOCS === 'off') return
  if (PACKAGE === undefined) throw new Error('API_DOCS=on but package.json (the API version) is missing')
  const { version } = JSON.parse(readFileSync(PACKAGE, 'utf8')) as { version: string }
  const schemes = securitySchemes(cfg)
  await fastify.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'sse-fanout',
        version,
        description: [
          'Server-Sent Events fan-out: publishers `POST /notify`, clients read `GET /stream` (EventSource).',
          'This document describes this instance as it is configured: answers that its settings turn off',
          '(auth, rate limits, load shedding) are left out.',
          '',
          'Every error body is `{ statusCode, error, message }` (Fastify\'s own errors add `code`); `message` names',
          'the bad field, header or setting. Besides the answers listed per route, any request may get `404` (no such',
          'route), `408` and a closed connection when its head or body takes longer than `HEADERS_TIMEOUT_MS` or',
          '`REQUEST_TIMEOUT_MS`, and, when `CORS_ORIGINS` is set, CORS headers and preflight (`OPTIONS`) answers.'
        ].join('\n')
      },
      tags: [
        { name: 'streams', description: 'Server-Sent Events' },
        { name: 'publishing', description: 'Events in' },
        { name: 'operations', description: 'Health and metrics' },
        ...(cfg.DEMO_PAGE === 'on' ? [{ name: 'demo', description: 'A page to watch it work (DEMO_PAGE)' }] : [])
      ],
      // No schemes when auth is off: the page then offers no Authorize button.
      ...(Object.keys(schemes).length > 0 && { components: { securitySchemes: schemes } })
    }
  })
  await fastify.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    // Its own files only: scripts and styles from /docs/static, requests to this origin
    // (and the inline styles Swagger UI's markup carries).
    staticCSP: "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    uiConfig: { deepLinking: true, defaultModelsExpandDepth: 0 }
  })
}

export default fp(docs, { name: 'docs', fastify: '5.x', dependencies: ['config'] })
