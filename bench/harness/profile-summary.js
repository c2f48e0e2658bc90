// Top self-time functions of a V8 .cpuprofile (node --cpu-prof), optionally only the
// samples inside given time windows (CLOCK_MONOTONIC µs, the clock of process.hrtime
// and of the profile's timestamps on Linux).
// CLI: node bench/harness/profile-summary.js file.cpuprofile [top]
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { pathToFileURL } from 'node:url'

function keyOf (frame) {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
  if (frame.url === '') return name
  return `${name} ${basename(frame.url)}:${frame.lineNumber + 1}`
}

/** { totalMs, rows: [{ fn, selfMs, selfPct, totalMs, totalPct }] } sorted by self time. */
export function summarize (profile, { windows = null, top = 20 } = {}) {
  const byId = new Map()
  const parent = new Map()
  for (const node of profile.nodes) {
    byId.set(node.id, node)
    for (const child of node.children ?? []) parent.set(child, node.id)
  }
  const self = new Map()
  const total = new Map()
  let sum = 0
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]
    const dt = profile.timeDeltas[i + 1] ?? 0
    if (windows !== null && !windows.some(w => t >= w[0] && t <= w[1])) continue
    const node = byId.get(profile.samples[i])
    const key = keyOf(node.callFrame)
    sum += dt
    self.set(key, (self.get(key) ?? 0) + dt)
    const seen = new Set()
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const k = keyOf(byId.get(id).callFrame)
      if (seen.has(k)) continue
      seen.add(k)
      total.set(k, (total.get(k) ?? 0) + dt)
    }
  }
  const rows = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([fn, us]) => ({
      fn,
      selfMs: us / 1000,
      selfPct: sum === 0 ? 0 : 100 * us / sum,
      totalMs: (total.get(fn) ?? 0) / 1000,
      totalPct: sum === 0 ? 0 : 100 * (total.get(fn) ?? 0) / sum
    }))
  const inclusive = (pattern) => [...total.entries()]
    .filter(([k]) => pattern.test(k))
    .sort((a, b) => b[1] - a[1])
    .map(([fn, us]) => ({ fn, totalMs: us / 1000, totalPct: sum === 0 ? 0 : 100 * us / sum }))
  return { totalMs: sum / 1000, rows, inclusive }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const profile = JSON.parse(readFileSync(process.argv[2], 'utf8'))
  const { totalMs, rows } = summarize(profile, { top: Number(process.argv[3] ?? 25) })
  console.log(`sampled ${totalMs.toFixed(0)} ms`)
  for (const r of rows) console.log(`${r.selfMs.toFixed(1).padStart(9)} ms ${r.selfPct.toFixed(1).padStart(5)} %  ${r.fn}`)
}
