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
