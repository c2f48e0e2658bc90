// Latency histogram in microseconds: 10 µs buckets up to 100 ms, 1 ms buckets up to
// 60 s, then one overflow bucket. Fixed size, so workers merge by adding arrays.
const FINE = 10_000
const COARSE = 59_900
export const SIZE = FINE + COARSE + 1

export function createHistogram () {
  return { counts: new Uint32Array(SIZE), n: 0, max: 0 }
}

export function bucketOf (us) {
  if (us < 0) return 0
  if (us < 100_000) return Math.floor(us / 10)
  const ms = Math.floor(us / 1000)
  return ms < 60_000 ? FINE + ms - 100 : SIZE - 1
}

/** The upper edge of a bucket, in µs (what a percentile reports). */
export function bucketValue (i) {
  if (i < FINE) return (i + 1) * 10
  return (i - FINE + 101) * 1000
}

export function record (h, us) {
  h.counts[bucketOf(us)]++
  h.n++
  if (us > h.max) h.max = us
}

/** Non-empty buckets as [index, count, index, count, ...] (small enough for IPC). */
export function toSparse (h) {
  const out = []
  for (let i = 0; i < SIZE; i++) if (h.counts[i] !== 0) out.push(i, h.counts[i])
  return { pairs: out, n: h.n, max: h.max }
}

export function mergeSparse (h, sparse) {
  for (let i = 0; i < sparse.pairs.length; i += 2) h.counts[sparse.pairs[i]] += sparse.pairs[i + 1]
  h.n += sparse.n
  if (sparse.max > h.max) h.max = sparse.max
}

/** q in [0, 1]; µs, or NaN for an empty histogram. */
export function percentile (h, q) {
  if (h.n === 0) return NaN
  const rank = Math.max(1, Math.ceil(q * h.n))
  let seen = 0
  for (let i = 0; i < SIZE; i++) {
    seen += h.counts[i]
    if (seen >= rank) return Math.min(bucketValue(i), h.max)
  }
  return h.max
}

/** The quantiles a run keeps for its latency chart (the saved results drop the histograms). */
export const CHART_QUANTILES = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999, 1]

/** Every q of `qs` (ascending, in [0, 1]) in one pass: [[q, ms], ...]; [] for an empty histogram. */
export function quantilesMs (h, qs = CHART_QUANTILES) {
  if (h.n === 0) return []
  const out = []
  let seen = 0
  let j = 0
  for (let i = 0; i < SIZE && j < qs.length; i++) {
    seen += h.counts[i]
    while (j < qs.length && seen >= Math.max(1, Math.ceil(qs[j] * h.n))) {
      out.push([qs[j], Math.min(bucketValue(i), h.max) / 1000])
      j++
    }
  }
  for (; j < qs.length; j++) out.push([qs[j], h.max / 1000])
  return out
}
