// A Redis Cluster's slot map as one short text (its masters' ranges: "0-5460 host:port,..."),
// from a CLUSTER SLOTS reply or from a client's slot table (ioredis Cluster's `slots`: per
// slot, its nodes' "host:port", master first), so the two compare as strings. Checked every
// few seconds for the cluster subscriber: its own refresh (a new connection, and its sharded
// subscribers comparing two JSON texts of 16,384 slots) costs ~6 ms of CPU, ~1.2 ms a second
// of an idle instance's, for a map that changes only on a failover or a reshard.

const SLOTS = 16384

/** A CLUSTER SLOTS reply: [start, end, [host, port, id, ...], replicas...] per range. */
type SlotsReply = Array<[number, number, ...Array<[string, number, ...unknown[]]>]>

/** The ranges, in slot order, adjacent ones of one master joined; unserved slots left out. */
function text (ranges: Array<[number, number, string]>): string {
  ranges.sort((a, b) => a[0] - b[0])
  const out: Array<[number, number, string]> = []
  for (const r of ranges) {
    const last = out.at(-1)
    if (last !== undefined && last[2] === r[2] && last[1] + 1 === r[0]) last[1] = r[1]
    else out.push([...r])
  }
  return out.map(([a, b, node]) => `${a}-${b} ${node}`).join(',')
}

/** The masters' ranges of a CLUSTER SLOTS reply; null when it is not one. */
export function replyMasters (reply: unknown): string | null {
  if (!Array.isArray(reply)) return null
  const ranges: Array<[number, number, string]> = []
  for (const range of reply as SlotsReply) {
    if (!Array.isArray(range)) return null
    const [start, end, ...nodes] = range
    // As ioredis reads it: the first node with an address serves the range.
    const first = nodes.find(n => Array.isArray(n) && typeof n[0] === 'string' && n[0] !== '')
    if (first !== undefined) ranges.push([start, end, `${first[0]}:${first[1]}`])
  }
  return text(ranges)
}

/** The masters' ranges of a client's slot table (one pass over the 16,384 slots). */
export function tableMasters (slots: ArrayLike<string[] | undefined>): string {
  const ranges: Array<[number, number, string]> = []
  for (let slot = 0; slot < SLOTS; slot++) {
    const node = slots[slot]?.[0] ?? ''
    if (node === '') continue
    const last = ranges.at(-1)
    if (last !== undefined && last[2] === node && last[1] + 1 === slot) last[1] = slot
    else ranges.push([slot, slot, node])
  }
  return text(ranges)
}
