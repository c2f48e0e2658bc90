// npm run cluster as a user runs it: Redis, instances and nginx come up, the page, a
// publish and a stream work through PORT, and SIGINT stops every process it started.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import { notify, openStream } from '../helpers/instance.js'
import { freePort } from '../helpers/redis.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const tsxLoader = pathToFileURL(join(root, 'node_modules/tsx/dist/loader.mjs')).href

function running (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('package.json runs deploy/cluster.ts', async t => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  t.equal(pkg.scripts.cluster, 'tsx deploy/cluster.ts')
})

t.test('npm run cluster -- --instances 2: ready, serves through PORT, and SIGINT stops everything it started', async t => {
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', tsxLoader, join(root, 'deploy/cluster.ts'), '--instances', '2'], {
    cwd: root, env: { PATH: process.env.PATH, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
  const exited = once(child, 'exit')
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const deadline = Date.now() + 60_000
  while (!/^ready: /m.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`npm run cluster did not get ready:\n${out}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  t.match(out, `ready: http://localhost:${port}/`, 'the page\'s URL')
  const pids = new Map([...out.matchAll(/^ {2}\[(\w+)\] \S+ \(pid (\d+)\)$/gm)].map(m => [m[1], Number(m[2])]))
  t.same([...pids.keys()].sort(), ['a', 'b', 'nginx', 'redis'], 'Redis, two instances and nginx')
  t.match(out, /^\[a\] /m, 'logs prefixed per instance')
  t.match(out, /^\[redis\] /m)

  const url = `http://127.0.0.1:${port}`
  const page = await fetch(`${url}/`)
  t.equal(page.status, 200)
  t.match(await page.text(), 'new EventSource(')
  const streams = [await openStream(t, `${url}/stream?topic=c`), await openStream(t, `${url}/stream?topic=c`)]
  const res = await notify(url, { topic: 'c', data: 'through nginx' })
  t.equal(res.status, 202)
  t.equal(res.body.fanout, 'cluster', 'the instances share the Redis')
  for (const s of streams) {
    await s.untilEvents(1)
    t.same(s.events, [{ id: res.body.id, data: 'through nginx' }])
  }
  const logged = /^\[nginx\] .*"POST \/notify" 202/m
  for (const until = Date.now() + 3000; !logged.test(out) && Date.now() < until;) await new Promise(resolve => setTimeout(resolve, 50))
  t.match(out, logged, 'nginx\'s access log, prefixed')

  child.kill('SIGINT')
  const [code] = await exited
  t.equal(code, 0, 'exit 0')
  for (const [name, pid] of pids) t.notOk(running(pid), `${name} (pid ${pid}) is gone`)
  await t.rejects(fetch(`${url}/health`), 'PORT is closed')
})
