// GET /metrics.
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { startInstance } from '../helpers/instance.js'

t.test('metrics in the Prometheus text format, never behind auth', async t => {
  const { url } = await startInstance(t, { SUBSCRIBE_AUTH: 'on', PUBLISH_AUTH: 'on', JWT_SECRET: 'x'.repeat(32) })
  const res = await fetch(`${url}/metrics`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  t.match(await res.text(), /^# HELP sse_clients Open SSE streams on this instance$/m)
})

t.test('README lists every metric the service exposes, and exposes every one it lists', async t => {
  const { url } = await startInstance(t)
  const exposed = new Set([...(await (await fetch(`${url}/metrics`)).text()).matchAll(/^# HELP (\S+) /gm)].map(m => m[1]))
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
  const section = readme.slice(readme.indexOf('### `GET /metrics`'), readme.indexOf('\n## ', readme.indexOf('### `GET /metrics`')))
  const listed = new Set<string>()
  for (const [, cell] of section.matchAll(/^\| (`[^|]+) \|/gm)) {
    for (const [, token] of cell.matchAll(/`([^`]+)`/g)) {
      if (token.endsWith('*')) continue // process_*, nodejs_*: prom-client's defaults
      const name = token.replace(/\{[a-z,]+\}$/, '') // its labels
      // `a_{x,y}_b` stands for a_x_b and a_y_b.
      const alternatives = /\{([a-z0-9,]+)\}/.exec(name)
      if (alternatives === null) listed.add(name)
      else for (const part of alternatives[1].split(',')) listed.add(name.replace(alternatives[0], part))
    }
  }
  t.ok(listed.size >= 20, `the table was read (${listed.size} names)`)
  for (const name of exposed) {
    if (name.startsWith('sse_') || name.startsWith('http_') || name.startsWith('nodejs_eventloop_lag')) t.ok(listed.has(name), `${name} is in README`)
  }
  for (const name of listed) t.ok(exposed.has(name), `${name} (README) is exposed`)
})
