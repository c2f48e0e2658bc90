// A Redis Cluster's slot map as one short text (its masters' ranges: "0-5460 host:port,..."),
// from a CLUSTER SLOTS reply or from a client's slot table (ioredis Cluster's `slots`: per
// slot, its nodes' "host:port", master first), so the two compare as strings. Checked every
// few seconds for the cluster subscriber: its own refresh (a new connection, and its sharded
// subscribers comparing two JSON texts of 16,384 slots) costs ~6 ms of CPU, ~1.2 ms a second
// of an idle instance's, for a map that changes only on a failover or a reshard.

const SLOTS = 16384

/** A CLUSTER SLOTS reply: [start, end, [host, port, id, ...], replicas...] per range. */
type SlotsReply = Array<[number, number, ...Array<[string, number, ...unknown[]]>]>

type Range = [start: number, end: number, node: string]

/** Adds a range to `out`, joined to the last one when it goes on from it on the same node. */
function add (out: Range[], start: number, end: number, node: string): void {
  const last = out.at(-1)
  if (last !== undefined && last[2] === node && last[1] + 1 === start) last[1] = end
  else out.push([start, end, node])
}

const text = (ranges: Range[]): string => ranges.map(([a, b, node]) => `${a}-${b} ${node}`).join(',')

/** The masters' ranges of a CLUSTER SLOTS reply; null when it is not one. */
export function replyMasters (reply: unknown): string | null {
  if (!Array.isArray(reply) || !reply.every(range => Array.isArray(range))) return null
  const ranges: Range[] = []
  for (const range of [...reply as SlotsReply].sort((a, b) => a[0] - b[0])) {
    const [start, end, ...nodes] = range
    // As ioredis reads it: the first node with an address serves the range.
    const first = nodes.find(n => Array.isArray(n) && typeof n[0] === 'string' && n[0] !== '')
    if (first !== undefined) add(ranges, start, end, `${first[0]}:${first[1]}`)
  }
  return text(ranges)
}

/** The masters' ranges of a client's slot table (one pass over the 16,384 slots). */
export function tableMasters (slots: ArrayLike<string[] | undefined>): string {
  const ranges: Range[] = []
  for (let slot = 0; slot < SLOTS; slot++) {
    const node = slots[slot]?.[0] ?? ''
    if (node !== '') add(ranges, slot, slot, node)
  }
  return text(ranges)
}
