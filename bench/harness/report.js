// Numbers to text: medians, ratios and markdown tables.
export function median (values) {
  const v = values.filter(x => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const m = v.length >> 1
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2
}

export function fmt (x, digits = 1) {
  if (x === undefined || x === null || Number.isNaN(x)) return '-'
  if (typeof x === 'string') return x
  if (Number.isInteger(x)) return x.toLocaleString('en-US')
  if (Math.abs(x) >= 10000) return Math.round(x).toLocaleString('en-US')
  return x.toFixed(digits)
}

export function table (headers, rows) {
  const lines = [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`]
  for (const r of rows) lines.push(`| ${r.map(c => (typeof c === 'number' ? fmt(c) : c ?? '-')).join(' | ')} |`)
  return lines.join('\n')
}

export function ratio (a, b) {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}x` : '-'
}
