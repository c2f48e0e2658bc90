// The per-request metrics print exactly what prom-client's Counter and Histogram printed.
import { Counter, Histogram, Registry } from 'prom-client'
import t from 'tap'
import { HttpMetrics } from '../../src/http-metrics.js'

const observations: Array<[string, string, number, number]> = [
  ['POST', '/notify', 202, 0.0004],
  ['POST', '/notify', 202, 0.005], // on a bound: counted in that bucket (le)
  ['POST', '/notify', 400, 0.03],
  ['GET', '/health', 200, 0.2],
  ['GET', 'unmatched', 404, 11], // past the last bound: +Inf only
  ['POST', '/notify', 503, 3],
  ['GET', '/stream', 200, 60]
]

t.test('the same text as prom-client for the same requests', async t => {
  const theirs = new Registry()
  const requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'], registers: [theirs] })
  const duration = new Histogram({ name: 'http_request_duration_seconds', help: 'HTTP request duration', labelNames: ['method', 'route'], registers: [theirs] })
  const ours = new Registry()
  const http = new HttpMetrics()
  ours.registerMetric(http.requests() as never)
  ours.registerMetric(http.durations() as never)
  for (const [method, route, status, seconds] of observations) {
    requests.inc({ method, route, status })
    duration.observe({ method, route }, seconds)
    http.record(method, route, status, seconds)
  }
  // prom-client lists series in the order they first appeared; ours groups them by route.
  const lines = (text: string): string[] => text.split('\n').filter(l => l !== '').sort()
  const mine = await ours.metrics()
  t.same(lines(mine), lines(await theirs.metrics()))
  t.match(mine, /^http_request_duration_seconds_bucket\{le="0.005",method="POST",route="\/notify"\} 2$/m)
  t.match(mine, /^http_request_duration_seconds_bucket\{le="10",method="GET",route="unmatched"\} 0$/m)
  t.match(mine, /^http_request_duration_seconds_bucket\{le="\+Inf",method="GET",route="unmatched"\} 1$/m)
  t.match(mine, /^http_requests_total\{method="POST",route="\/notify",status="202"\} 2$/m)
  t.same(JSON.parse(JSON.stringify(await ours.getMetricsAsJSON())).map((m: { name: string }) => m.name), ['http_requests_total', 'http_request_duration_seconds'])
})

t.test('nothing recorded: the metrics are listed without samples', async t => {
  const ours = new Registry()
  const http = new HttpMetrics()
  ours.registerMetric(http.requests() as never)
  ours.registerMetric(http.durations() as never)
  t.equal(await ours.metrics(), '# HELP http_requests_total HTTP requests\n# TYPE http_requests_total counter\n\n# HELP http_request_duration_seconds HTTP request duration\n# TYPE http_request_duration_seconds histogram\n')
})
