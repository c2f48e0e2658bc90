// Redis memory per topic: one instance on a private redis-server publishes E events to
// each of N topics (batches of up to 1,000 events, topics interleaved), as per-user
// topics would. Per topic: used_memory growth (INFO memory, what maxmemory counts),
// keys, how many carry a TTL, and MEMORY USAGE of one topic's key (an estimate: Redis
// counts a fixed ~250 bytes per radix-tree node of a stream). A fresh Redis per row.
import { Redis } from 'ioredis'
import { payload } from '../harness/publisher.js'
import { table } from '../harness/report.js'
import { startRedis, startService } from '../harness/targets.js'

function post (target, events) {
  return fetch(`http://${target.host}:${target.port}/notify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(events)
  }).then(async res => {
    const text = await res.text()
    if (res.status !== 202) throw new Error(`POST /notify: ${res.status} ${text.slice(0, 200)}`)
    if (!text.includes('"fanout":"cluster"')) throw new Error(`POST /notify was not published to Redis: ${text.slice(0, 200)}`)
  })
}

const used = async redis => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))[1])

async function expiring (redis) {
  const m = /db0:keys=\d+,expires=(\d+)/.exec(await redis.info('keyspace'))
  return m === null ? 0 : Number(m[1])
}

async function one (opts, perTopic, log) {
  const redis = await startRedis()
  const admin = new Redis(redis.url)
  const prefix = 'mem:'
  let service
  try {
    service = await startService({ name: 'memory', redisUrl: redis.url, prefix, env: { HISTORY_TTL_MS: String(opts.memoryTtlMs) } })
    await post(service, [{ topic: 'warm-up', data: 'x' }])
    const keys0 = await admin.dbsize()
    const expires0 = await expiring(admin)
    const mem0 = await used(admin)
    const topics = opts.memoryTopics
    const data = payload(0, opts.memoryBytes)
    const total = topics * perTopic
    const t0 = Date.now()
    let batch = []
    const flush = async () => { const b = batch; batch = []; if (b.length > 0) await post(service, b) }
    for (let i = 0; i < total; i++) {
      batch.push({ topic: `user:${i % topics}`, event: 'created', data })
      if (batch.length === 1000) await flush()
    }
    await flush()
    const seconds = (Date.now() - t0) / 1000
    const grown = await used(admin) - mem0
    const keys = await admin.dbsize() - keys0
    const withTtl = await expiring(admin) - expires0
    const sample = `${prefix}{user:${topics >> 1}}`
    const usage = await admin.memory('USAGE', sample, 'SAMPLES', '0')
    const ttl = await admin.pttl(sample)
    const nodeBytes = (await admin.config('GET', 'stream-node-max-bytes'))[1]
    const row = { perTopic, topics, bytesPerTopic: grown / topics, keysPerTopic: keys / topics, withTtl, usage, ttl, nodeBytes, seconds }
    log(`memory: ${perTopic} event(s) x ${topics} topics: ${Math.round(row.bytesPerTopic)} B/topic, ${keys} keys, ${withTtl} with a TTL, MEMORY USAGE ${usage}, ${seconds.toFixed(1)} s`)
    return row
  } finally {
    admin.disconnect()
    await service?.stop()
    await redis.stop()
  }
}

export async function redisMemory (opts, log) {
  const rows = []
  for (const e of opts.memoryEvents) rows.push(await one(opts, e, log))
  const text = `### Redis memory per topic: ${opts.memoryTopics.toLocaleString('en-US')} topics, events of ${opts.memoryBytes}-byte data with an event name, HISTORY_TTL_MS ${opts.memoryTtlMs}, a fresh redis-server per row (stream-node-max-bytes ${rows[0]?.nodeBytes})\n\n` +
    table(['events per topic', 'used_memory growth per topic (bytes)', 'keys per topic', 'keys with a TTL', 'MEMORY USAGE of one topic (bytes)', 'its PTTL ms', 'publish s'],
      rows.map(r => [r.perTopic, Math.round(r.bytesPerTopic), r.keysPerTopic, r.withTtl, r.usage, r.ttl, r.seconds]))
  return { text, rows }
}
