// The bench's tables as charts: Vega-Lite specs, compiled to Vega and rendered to SVG
// headless (View.toSVG needs no canvas). Every value drawn comes from the results of a
// run, live or saved (bench/out/results-*.json): one function per kind of chart, one per
// scenario that picks the charts its results fit. A target that was skipped (nchan not
// installed) is simply not in the results, so not in the charts.
//
//   node bench/charts.js bench/out/results-<stamp>.json [--out=DIR]
//                        re-renders the charts of a saved run (default DIR bench/out/charts-<stamp>/)
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import * as vega from 'vega'
import { compile } from 'vega-lite'
import { OUT_DIR, ROOT } from './harness/targets.js'

const WIDTH = 480
const FONT = 'Helvetica, Arial, sans-serif'

function base (title, subtitle) {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle: subtitle.filter(Boolean), anchor: 'start', subtitleColor: '#555', font: FONT, subtitleFont: FONT },
    background: 'white',
    config: { aria: false, font: FONT, view: { stroke: null }, axis: { labelFont: FONT, titleFont: FONT }, legend: { labelFont: FONT, titleFont: FONT, labelLimit: 0 } }
  }
}

/** The same colour for a target in every chart of a run: its place in `domain`. */
function color (domain) {
  return { field: 'target', type: 'nominal', title: null, scale: { domain, scheme: 'tableau10' }, legend: null }
}

/**
 * Horizontal bars, one per target, at the value of the table (a median); a tick for each
 * round it is the median of. `rows`: [{ target, value, rounds: [numbers] }].
 */
export function barChart ({ title, subtitle = [], axis, rows, format = ',.0f', axisFormat = format === ',.0f' ? '~s' : ',~r', domain = rows.map(r => r.target) }) {
  // The label goes right of the bar or of its rightmost dot, whichever is further.
  const bars = rows.filter(r => Number.isFinite(r.value)).map(r => ({ target: r.target, value: r.value, labelAt: Math.max(r.value, ...(r.rounds ?? []).filter(Number.isFinite)) }))
  const dots = rows.flatMap(r => (r.rounds ?? []).map((v, i) => ({ target: r.target, round: i + 1, value: v }))).filter(d => Number.isFinite(d.value))
  const y = { field: 'target', type: 'nominal', title: null, sort: domain, axis: { labelLimit: 0 } }
  const x = { field: 'value', type: 'quantitative', title: axis, axis: { format: axisFormat } }
  const layer = [
    { data: { values: bars }, mark: { type: 'bar', height: { band: 0.7 } }, encoding: { y, x, color: color(domain) } },
    { data: { values: bars }, mark: { type: 'text', align: 'left', dx: 6, fontSize: 11 }, encoding: { y, x: { ...x, field: 'labelAt' }, text: { field: 'value', format } } }
  ]
  if (dots.length > bars.length) {
    layer.push({ data: { values: dots }, mark: { type: 'tick', color: 'black', thickness: 2, bandSize: 14, opacity: 0.7 }, encoding: { y, x } })
  }
  return { ...base(title, subtitle), width: WIDTH, height: { step: 34 }, layer }
}

/** Latency percentiles: x from p0 to p99.99 on a "nines" scale (-log10(1 - q)), y in ms (log). `series`: [{ target, run, quantiles: [[q, ms]] }]. */
export function percentileChart ({ title, subtitle = [], series, domain = [...new Set(series.map(s => s.target))] }) {
  const points = series.flatMap(s => (s.quantiles ?? []).filter(([q, ms]) => q < 1 && ms > 0).map(([q, ms]) => ({
    target: s.target, run: `${s.target} ${s.run}`, nines: -Math.log10(1 - q), pct: q * 100, ms
  })))
  const maxNines = Math.max(0, ...points.map(p => p.nines))
  const ticks = Array.from({ length: Math.floor(maxNines + 1e-9) + 1 }, (_, i) => i)
  return {
    ...base(title, subtitle),
    width: WIDTH,
    height: 300,
    data: { values: points },
    mark: { type: 'line', point: { size: 14 }, strokeWidth: 1.5, opacity: 0.85 },
    encoding: {
      x: { field: 'nines', type: 'quantitative', title: 'percentile', scale: { domain: [0, Math.max(1, maxNines)] }, axis: { values: ticks, labelExpr: "format(100 - 100 * pow(10, -datum.value), '.4~f') + '%'" } },
      y: { field: 'ms', type: 'quantitative', title: 'latency, ms (log scale)', scale: { type: 'log' }, axis: { format: ',~r', tickCount: 6 } },
      color: { ...color(domain), legend: { orient: 'top', direction: 'horizontal', title: null } },
      detail: { field: 'run' }
    }
  }
}

/** Steady probes: p99 against the rate tried, a circle if sustained, a cross if not, a dashed rule at the p99 limit. `probes`: [{ target, rate, p99, ok }]. */
export function probeChart ({ title, subtitle = [], probes, limitMs, domain = [...new Set(probes.map(p => p.target))] }) {
  const values = probes.filter(p => Number.isFinite(p.p99) && p.p99 > 0 && p.rate > 0).map(p => ({ ...p, result: p.ok ? 'sustained' : 'not sustained' }))
  const rates = [...new Set(values.map(p => p.rate))].sort((a, b) => a - b)
  const x = { field: 'rate', type: 'quantitative', title: 'events/s published (log scale)', scale: { type: 'log', base: 2 }, axis: rates.length <= 12 ? { values: rates, format: ',' } : { format: '~s' } }
  const y = { field: 'p99', type: 'quantitative', title: 'p99 latency, ms (log scale)', scale: { type: 'log' }, axis: { format: ',~r', tickCount: 6 } }
  const layer = [
    { data: { values }, mark: { type: 'line', strokeWidth: 1, opacity: 0.5 }, encoding: { x, y, color: { ...color(domain), legend: { orient: 'top', direction: 'horizontal', title: null } }, order: { field: 'rate' } } },
    {
      data: { values },
      mark: { type: 'point', size: 70, filled: true, opacity: 0.9 },
      encoding: {
        x,
        y,
        color: { ...color(domain), legend: { orient: 'top', direction: 'horizontal', title: null } },
        shape: { field: 'result', type: 'nominal', title: null, scale: { domain: ['sustained', 'not sustained'], range: ['circle', 'cross'] }, legend: { orient: 'top', direction: 'horizontal' } }
      }
    }
  ]
  if (Number.isFinite(limitMs)) {
    layer.push({ data: { values: [{ limit: limitMs }] }, mark: { type: 'rule', strokeDash: [4, 4], color: '#888' }, encoding: { y: { field: 'limit', type: 'quantitative' } } })
    layer.push({ data: { values: [{ limit: limitMs, label: `p99 limit ${limitMs} ms` }] }, mark: { type: 'text', align: 'left', baseline: 'bottom', dy: -2, x: 2, color: '#666', fontSize: 10 }, encoding: { y: { field: 'limit', type: 'quantitative' }, text: { field: 'label' } } })
  }
  return { ...base(title, subtitle), width: WIDTH, height: 300, layer }
}

/** SVG text of a Vega-Lite spec, rendered without a browser or canvas. */
export async function toSvg (spec) {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`
const label = (result, name) => result.labels?.[name] ?? name
const skipped = result => (result.notes ?? []).filter(n => /skipped/.test(n)).map(n => n.replace(/:.*$/, ''))

/** Charts of the fan-out scenario: [{ name, spec }]. */
export function fanoutCharts (result, opts, run) {
  const names = Object.keys(result.summary ?? {})
  if (names.length === 0) return []
  const domain = names.map(n => label(result, n))
  const clients = result.memory?.[names[0]]?.clients
  const rounds = Math.max(...names.map(n => result.runs?.[n]?.burst?.length ?? 0))
  const what = `${clients ?? '?'} clients per target, burst of ${opts.events} events${opts.rate > 0 ? ` at ${opts.rate}/s` : ''}, ${opts.bytes}-byte payloads`
  const one = `${clients ?? '?'} clients per target, one ${opts.bytes}-byte event after ${opts.idleMs} ms of quiet`
  const sub = (extra, first = what) => [first, extra, ...skipped(result), run]
  const median = `bar: median of ${plural(rounds, 'round')}; ticks: each round`
  const rows = (key, roundKey, kind = 'burst') => names.map(n => ({
    target: label(result, n), value: result.summary[n][key], rounds: (result.runs?.[n]?.[kind] ?? []).map(x => x[roundKey])
  }))
  const series = kind => names.flatMap(n => (result.runs?.[n]?.[kind] ?? []).map((x, i) => ({ target: label(result, n), run: `round ${i + 1}`, quantiles: x.quantiles })))
  const charts = [
    { name: 'fanout-deliveries', spec: barChart({ title: 'Fan-out: deliveries/s (higher is better)', subtitle: sub(median), axis: 'deliveries/s', rows: rows('deliveriesPerSec', 'deliveriesPerSec'), domain }) },
    { name: 'fanout-p99', spec: barChart({ title: 'Fan-out: burst p99 latency, ms (lower is better)', subtitle: sub(median), axis: 'p99, ms', rows: rows('p99', 'p99'), format: ',.1f', domain }) },
    { name: 'fanout-one-event-p99', spec: barChart({ title: 'One event to idle clients: p99 latency, ms (lower is better)', subtitle: sub(median, one), axis: 'p99, ms', rows: rows('idleP99', 'p99', 'idle'), format: ',.1f', domain }) },
    { name: 'fanout-memory', spec: barChart({ title: 'Memory per idle connection, KB (lower is better)', subtitle: sub('RSS growth while the clients connected, over their number'), axis: 'KB per connection', rows: names.map(n => ({ target: label(result, n), value: result.summary[n].kbPerClient })), format: ',.1f', domain }) }
  ]
  for (const [kind, title] of [['burst', 'Fan-out: latency distribution of the bursts'], ['idle', 'One event to idle clients: latency distribution']]) {
    const s = series(kind)
    if (s.some(x => (x.quantiles ?? []).length > 0)) charts.push({ name: `fanout-${kind === 'burst' ? 'latency' : 'one-event-latency'}`, spec: percentileChart({ title, subtitle: sub('one line per target and round; from each event\'s send time to its arrival', kind === 'burst' ? what : one), series: s, domain }) })
  }
  return charts
}

/** Charts of the two-instance scenario. */
export function clusterCharts (result, opts, run) {
  const names = Object.keys(result.summary ?? {}).filter(n => result.summary[n]?.deliveriesPerSec !== undefined)
  if (names.length === 0) return []
  const domain = names.map(n => label(result, n))
  const rounds = Math.max(...names.map(n => result.runs?.[n]?.length ?? 0))
  const s0 = result.summary[names[0]]
  const what = `two instances + Redis per target, ${s0.clients} clients split between them, ${opts.clusterEvents} events published alternately`
  const median = `bar: median of ${plural(rounds, 'round')}; ticks: each round`
  const sub = extra => [what, extra, ...skipped(result), run]
  const rows = key => names.map(n => ({ target: label(result, n), value: result.summary[n][key], rounds: (result.runs?.[n] ?? []).map(x => x[key]) }))
  const title = 'Two instances + Redis'
  const charts = [
    { name: 'cluster-deliveries', spec: barChart({ title: `${title}: deliveries/s (higher is better)`, subtitle: sub(median), axis: 'deliveries/s', rows: rows('deliveriesPerSec'), domain }) },
    { name: 'cluster-p99', spec: barChart({ title: `${title}: p99 latency, ms (lower is better)`, subtitle: sub(median), axis: 'p99, ms', rows: rows('p99'), format: ',.1f', domain }) }
  ]
  const memory = names.flatMap(n => (result.memory?.[n] ?? []).map(m => ({ target: `${label(result, n)}: ${m.name}`, value: m.perClient / 1024 })))
  if (memory.length > 0) {
    charts.push({ name: 'cluster-memory', spec: barChart({ title: `${title}: memory per idle connection, KB (lower is better)`, subtitle: sub('RSS growth of each instance while its clients connected, over their number'), axis: 'KB per connection', rows: memory, format: ',.1f' }) })
  }
  const series = names.flatMap(n => (result.runs?.[n] ?? []).map((x, i) => ({ target: label(result, n), run: `round ${i + 1}`, quantiles: x.quantiles })))
  if (series.some(x => (x.quantiles ?? []).length > 0)) charts.push({ name: 'cluster-latency', spec: percentileChart({ title: `${title}: latency distribution`, subtitle: sub('one line per target and round'), series, domain }) })
  return charts
}

/** Charts of the steady scenario. */
export function steadyCharts (result, opts, run) {
  const names = Object.keys(result.probes ?? {})
  if (names.length === 0) return []
  const domain = names.map(n => label(result, n))
  const what = `${opts.steadyClients} clients per target, ${opts.bytes}-byte events at a fixed rate for ${opts.steadySeconds} s each`
  const sub = extra => [what, extra, ...skipped(result), run]
  const best = n => result.probes[n].filter(p => p.ok).sort((a, b) => b.rate - a.rate)[0]
  const charts = [
    { name: 'steady-rate', spec: barChart({ title: 'Steady stream: highest rate sustained, events/s (higher is better)', subtitle: sub(`sustained = every event to every client, none twice, p99 <= ${opts.steadyP99} ms`), axis: 'events/s', rows: names.map(n => ({ target: label(result, n), value: result.bounds?.[n]?.pass ?? best(n)?.rate ?? 0 })), domain }) },
    { name: 'steady-deliveries', spec: barChart({ title: 'Steady stream: deliveries/s at the highest rate sustained', subtitle: sub(''), axis: 'deliveries/s', rows: names.map(n => ({ target: label(result, n), value: best(n)?.deliveriesPerSec ?? NaN })), domain }) },
    { name: 'steady-probes', spec: probeChart({ title: 'Steady stream: p99 latency at each rate probed', subtitle: sub('circle: sustained; cross: not'), probes: names.flatMap(n => result.probes[n].map(p => ({ ...p, target: label(result, n) }))), limitMs: opts.steadyP99, domain }) }
  ]
  const half = result.half ?? {}
  const series = names.flatMap(n => (half[n] ?? []).map((x, i) => ({ target: label(result, n), run: `run ${i + 1}`, quantiles: x.quantiles })))
  if (series.some(x => (x.quantiles ?? []).length > 0)) {
    charts.push({ name: 'steady-latency', spec: percentileChart({ title: `Steady stream at ${result.halfRate} events/s: latency distribution`, subtitle: sub('half the slowest target\'s sustained rate; one line per target and run'), series, domain }) })
  }
  return charts
}

const DRIVERS = { fanout: fanoutCharts, cluster: clusterCharts, steady: steadyCharts }

/**
 * Renders the charts of every scenario in `raw` (what run.js saves as results-*.json) into
 * `dir`; returns the paths written. A chart that fails is reported and skipped: the
 * tables are already saved.
 */
export async function writeCharts (raw, dir, log = line => console.error(line)) {
  const run = `run of ${new Date(raw.started).toISOString().replace(/\.\d+Z$/, 'Z')}${raw.commit ? ` at ${raw.commit}` : ''}`
  const paths = []
  for (const [scenario, result] of Object.entries(raw.results ?? {})) {
    const driver = DRIVERS[scenario]
    if (driver === undefined || result === null || typeof result !== 'object') continue
    let charts
    try {
      charts = driver(result, raw.opts, run)
    } catch (err) {
      log(`  charts of ${scenario} failed: ${err.message}`)
      continue
    }
    for (const { name, spec } of charts) {
      try {
        const svg = await toSvg(spec)
        mkdirSync(dir, { recursive: true })
        const path = join(dir, `${name}.svg`)
        writeFileSync(path, svg + '\n')
        paths.push(path)
      } catch (err) {
        log(`  chart ${name} failed: ${err.message}`)
      }
    }
  }
  return paths
}

async function cli () {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { out: { type: 'string' } } })
  if (positionals.length !== 1) {
    console.error('usage: node bench/charts.js bench/out/results-<stamp>.json [--out=DIR]')
    process.exit(1)
  }
  const file = positionals[0]
  const raw = JSON.parse(readFileSync(file, 'utf8'))
  const dir = values.out ?? join(OUT_DIR, `charts-${basename(file).replace(/^results-|\.json$/g, '')}`)
  const paths = await writeCharts(raw, dir)
  for (const p of paths) console.log(relative(ROOT, p))
  if (paths.length === 0) console.error(`no charts: ${file} has no fanout, cluster or steady results`)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  cli().catch(err => {
    console.error(err)
    process.exit(1)
  })
}
