// Event ids are "<ms>-<seq>": a millisecond clock and a counter within it, the same
// shape as Redis Stream ids, so one id orders events across topics and instances.

const ID_PATTERN = /^(\d{1,15})-(\d{1,15})$/

export function isEventId (value: string): boolean {
  return ID_PATTERN.test(value)
}

/** Negative when a < b, 0 when equal, positive when a > b. Both must be valid ids. */
export function compareIds (a: string, b: string): number {
  const da = a.indexOf('-')
  const db = b.indexOf('-')
  const ma = Number(a.slice(0, da))
  const mb = Number(b.slice(0, db))
  if (ma !== mb) return ma - mb
  return Number(a.slice(da + 1)) - Number(b.slice(db + 1))
}

export function idMillis (id: string): number {
  return Number(id.slice(0, id.indexOf('-')))
}

/** Hands out increasing ids from the local clock (single-instance mode). */
export class IdClock {
  private ms = 0
  private seq = -1

  next (now: number = Date.now()): string {
    if (now > this.ms) {
      this.ms = now
      this.seq = 0
    } else {
      this.seq++
    }
    return `${this.ms}-${this.seq}`
  }
}
