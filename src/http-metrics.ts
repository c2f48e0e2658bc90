// The two per-request metrics, http_requests_total and http_request_duration_seconds,
// counted as plain numbers and turned into Prometheus samples only when /metrics is
// scraped. prom-client's own inc() and observe() check and hash the labels on every
// request: about 3 µs of POST /notify's 28 (bench/RESULTS.md); this costs a few Map reads.

/** prom-client's default buckets, as http_request_duration_seconds always had. */
export const HTTP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

interface Series {
  method: string
  route: string
  /** Requests by status code. */
  statuses: Map<number, number>
  /** Observations per bucket (not cumulative), the last one past the highest bound. */
  buckets: number[]
  sum: number
  count: number
}

/** One sample as prom-client's registry prints it. */
interface Sample {
  labels: Record<string, string | number>
  value: number
  metricName?: string
}

/** What prom-client's Registry.registerMetric takes and metrics() prints. */
export interface RegistryMetric {
  name: string
  help: string
  type: 'counter' | 'histogram'
  aggregator: 'sum'
  get: () => Promise<{ name: string, help: string, type: string, values: Sample[], aggregator: 'sum' }>
}

/** A metric for the registry whose samples `values` makes at scrape time. */
function metric (name: string, help: string, type: RegistryMetric['type'], values: () => Sample[]): RegistryMetric {
  const fields = { name, help, type, aggregator: 'sum' as const }
  return { ...fields, get: async () => ({ ...fields, values: values() }) }
}

export class HttpMetrics {
  /** route -> method -> series: the route and method strings repeat, so no key is built per request. */
  private readonly routes = new Map<string, Map<string, Series>>()

  record (method: string, route: string, status: number, seconds: number): void {
    let methods = this.routes.get(route)
    if (methods === undefined) {
      methods = new Map()
      this.routes.set(route, methods)
    }
    let s = methods.get(method)
    if (s === undefined) {
      s = { method, route, statuses: new Map(), buckets: new Array<number>(HTTP_DURATION_BUCKETS.length + 1).fill(0), sum: 0, count: 0 }
      methods.set(method, s)
    }
    s.statuses.set(status, (s.statuses.get(status) ?? 0) + 1)
    let b = 0
    while (b < HTTP_DURATION_BUCKETS.length && seconds > HTTP_DURATION_BUCKETS[b]) b++
    s.buckets[b]++
    s.sum += seconds
    s.count++
  }

  private * series (): Generator<Series> {
    for (const methods of this.routes.values()) yield * methods.values()
  }

  /** http_requests_total, as a prom-client Counter with labels method, route, status printed it. */
  requests (): RegistryMetric {
    return metric('http_requests_total', 'HTTP requests', 'counter', () => {
      const values: Sample[] = []
      for (const s of this.series()) {
        for (const [status, value] of s.statuses) values.push({ labels: { method: s.method, route: s.route, status }, value })
      }
      return values
    })
  }

  /** http_request_duration_seconds, as a prom-client Histogram with labels method, route printed it. */
  durations (): RegistryMetric {
    const name = 'http_request_duration_seconds'
    return metric(name, 'HTTP request duration', 'histogram', () => {
      const values: Sample[] = []
      for (const s of this.series()) {
        const labels = { method: s.method, route: s.route }
        let below = 0
        HTTP_DURATION_BUCKETS.forEach((le, b) => {
          below += s.buckets[b]
          values.push({ labels: { le, ...labels }, value: below, metricName: `${name}_bucket` })
        })
        values.push({ labels: { le: '+Inf', ...labels }, value: s.count, metricName: `${name}_bucket` })
        values.push({ labels, value: s.sum, metricName: `${name}_sum` })
        values.push({ labels, value: s.count, metricName: `${name}_count` })
      }
      return values
    })
  }
}
