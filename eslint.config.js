import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'node_modules/**', 'bench/out/**', '.probe/**'] }),
  {
    // The core knows nothing of HTTP: no Fastify, nothing from the layers above it.
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { regex: '^fastify(-plugin)?(/|$)', message: 'src/ is the core: no Fastify import (plugins/ adapt it to Fastify).' },
          { regex: '^@fastify/(?!proxy-addr$)', message: 'src/ is the core: no @fastify/* package but @fastify/proxy-addr.' },
          { regex: '^(\\.\\./)+(plugins|routes)(/|$)', message: 'src/ imports nothing from plugins/ or routes/: they import it.' },
          { regex: '^(\\.\\./)+(app|server)(\\.[cm]?[jt]s)?$', message: 'src/ imports nothing from app.ts or server.ts: they import it.' }
        ]
      }]
    }
  }
]
