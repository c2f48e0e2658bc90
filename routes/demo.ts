// GET / and /demo: a page to watch the service work (public/demo.html; DEMO_PAGE=off
// removes both). Its Content-Security-Policy allows its own inline script and style (by
// their hashes) and requests to this origin, nothing else.
import type { FastifyInstance } from 'fastify'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Type } from 'typebox'

// Not compiled: the page stays at the project root, above routes/ (tsx) and dist/routes/ (npm start).
const PAGE = ['../public/demo.html', '../../public/demo.html'].map(p => fileURLToPath(new URL(p, import.meta.url)))

function hashes (html: string, tag: 'script' | 'style'): string {
  const sources = [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map(m => m[1])
  return sources.map(s => `'sha256-${createHash('sha256').update(s).digest('base64')}'`).join(' ') || "'none'"
}

export default async function demoRoute (fastify: FastifyInstance): Promise<void> {
  if (fastify.config.DEMO_PAGE === 'off') return
  const file = PAGE.find(p => existsSync(p))
  if (file === undefined) throw new Error(`DEMO_PAGE=on but the page is missing (looked for ${PAGE.join(' and ')})`)
  const html = readFileSync(file, 'utf8')
  const policy = [
    "default-src 'none'",
    `script-src ${hashes(html, 'script')}`,
    `style-src ${hashes(html, 'style')}`,
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'"
  ].join('; ')
  const headers = {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': policy,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer'
  }
  const schema = {
    summary: 'A page that watches streams and publishes (DEMO_PAGE)',
    tags: ['demo'],
    querystring: Type.Object({
      topic: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())], { description: 'Topics the page opens with (repeatable, or comma-separated), so a link opens the same view' })),
      event: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())], { description: 'Event names it listens to (repeatable, or comma-separated)' }))
    }),
    response: { 200: { description: 'The page (public/demo.html); its script reads the query', content: { 'text/html': { schema: Type.String() } } } }
  }
  for (const url of ['/', '/demo']) {
    fastify.get(url, { schema }, async (_request, reply) => reply.headers(headers).send(html))
  }
}
