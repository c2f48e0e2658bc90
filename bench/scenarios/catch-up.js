// Catch-up after a lost subscriber connection, at scale: instance A holds TOPICS streams,
// one per topic; B publishes one event to every topic, then A's subscriber connection is
// killed (CLIENT KILL TYPE pubsub) and B publishes one more to every topic while A
// resubscribes and reads every topic's history after its head. Reports how long until
// every stream had both events, duplicates, B's answers and Redis's commands.
// Usage: node bench/scenarios/catch-up.js [TOPICS]. Bounded: a hard time limit.
import http from 'node:http'
import { redisCommand, startRedis, startService } from '../harness/targets.js'

const TOPICS = Number(process.argv[2] ?? 4000)
const BATCH = 500
setTimeout(() => { console.error('catch-up: time limit'); process.exit(2) }, 180000).unref()

function post (target, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: target.host, port: target.port, path: '/notify', method: 'POST', headers: { 'content-type': 'application/json' } }, res => {
      res.resume()
      res.on('end', () => resolve(res.statusCode))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function publishToAll (target, datum) {
  const statuses = []
  for (let first = 0; first < TOPICS; first += BATCH) {
    const events = Array.from({ length: Math.min(BATCH, TOPICS - first) }, (_, i) => ({ topic: `t${first + i}`, data: datum }))
    statuses.push(await post(target, JSON.stringify(events)))
  }
  return statuses
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const redis = await startRedis()
const a = await startService({ name: 'catch-up-a', redisUrl: redis.url, prefix: 'cu:' })
const b = await startService({ name: 'catch-up-b', redisUrl: redis.url, prefix: 'cu:' })
try {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity })
  const got = new Array(TOPICS).fill(0)
  const streams = []
  const open = i => new Promise((resolve, reject) => {
    const req = http.get({ host: a.host, port: a.port, path: `/stream?topic=t${i}`, agent }, res => {
      res.on('data', d => { got[i] += (d.toString().match(/^data:/mg) ?? []).length })
      resolve()
    })
    req.on('error', reject)
    streams.push(req)
  })
  // A thousand at a time: more at once overflow the listen backlog.
  for (let first = 0; first < TOPICS; first += 1000) {
    await Promise.all(Array.from({ length: Math.min(1000, TOPICS - first) }, (_, i) => open(first + i)))
  }
  await sleep(3000) // every subscription live
  const before = await publishToAll(b, 'a')
  const started = Date.now()
  const killed = (await redisCommand(redis.port, ['CLIENT', 'KILL', 'TYPE', 'pubsub'])).trim()
  const during = await publishToAll(b, 'b')
  while (Date.now() - started < 60000 && !got.every(n => n >= 2)) await sleep(20)
  const ms = Date.now() - started
  await sleep(500) // anything late would show as a duplicate
  const stats = (await redisCommand(redis.port, ['INFO', 'commandstats'])).split('\r\n').filter(l => /evalsha|ssubscribe|spublish/.test(l))
  console.log(JSON.stringify({
    topics: TOPICS,
    subscriberConnectionsKilled: killed,
    complete: got.filter(n => n >= 2).length,
    duplicated: got.filter(n => n > 2).length,
    msUntilAllComplete: ms,
    answers: [...new Set([...before, ...during])].join('/'),
    redis: stats
  }, null, 1))
  for (const s of streams) s.destroy()
} finally {
  await a.stop()
  await b.stop()
  await redis.stop()
}
process.exit(0)
