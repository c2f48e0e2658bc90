// The naive SSE server, as one writes it first: node:http, a list of responses per
// topic, and every frame built as a string for every client. Same API as the service
// (GET /stream?topic=T, POST /notify {topic, data} or an array), no history, no Redis.
import http from 'node:http'

const clients = new Map()
let nextId = 0

function send (topic, data) {
  const id = ++nextId
  const text = typeof data === 'string' ? data : JSON.stringify(data)
  for (const res of clients.get(topic) ?? []) {
    res.write(`id: ${id}\ndata: ${text}\n\n`)
  }
  return String(id)
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost')
  if (req.method === 'GET' && url.pathname === '/stream') {
    const topic = url.searchParams.get('topic') ?? ''
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
    res.write(': connected\n\n')
    if (!clients.has(topic)) clients.set(topic, new Set())
    clients.get(topic).add(res)
    res.on('close', () => clients.get(topic).delete(res))
    return
  }
  if (req.method === 'POST' && url.pathname === '/notify') {
    let body = ''
    req.on('data', chunk => { body += chunk })
    req.on('end', () => {
      let events
      try {
        events = JSON.parse(body)
      } catch {
        res.writeHead(400).end()
        return
      }
      const list = Array.isArray(events) ? events : [events]
      const ids = list.map(e => send(e.topic, e.data))
      res.writeHead(202, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ ids, fanout: 'local' }))
    })
    return
  }
  if (url.pathname === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ status: 'ok', clients: [...clients.values()].reduce((n, s) => n + s.size, 0) }))
    return
  }
  res.writeHead(404).end()
})

server.listen(Number(process.env.PORT ?? 3002), process.env.HOST ?? '127.0.0.1')
process.on('SIGTERM', () => {
  for (const set of clients.values()) for (const res of set) res.end()
  server.close(() => process.exit(0))
})
