import t from 'tap'
import { atExpiry } from '../../src/expiry.js'

/** Node's longest timer; a longer one fires at once. */
const LONGEST = 2 ** 31 - 1

/**
 * Runs `scenario` with setTimeout, clearTimeout and Date.now replaced by a clock that only
 * moves on `advance`; synchronous, so nothing else runs meanwhile.
 */
function withFakeClock (scenario: (clock: { now: () => number, advance: (ms: number) => void, delays: number[], pending: () => number }) => void): void {
  const real = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout, now: Date.now }
  let now = 1_700_000_000_000
  let nextId = 1
  const timers = new Map<number, { at: number, fn: () => void }>()
  const delays: number[] = []
  globalThis.setTimeout = ((fn: () => void, ms: number) => {
    delays.push(ms)
    timers.set(nextId, { at: now + ms, fn })
    return nextId++
  }) as unknown as typeof setTimeout
  globalThis.clearTimeout = ((id: number) => { timers.delete(id) }) as unknown as typeof clearTimeout
  Date.now = () => now
  try {
    scenario({
      now: () => now,
      delays,
      pending: () => timers.size,
      advance (ms) {
        const end = now + ms
        while (true) {
          const due = [...timers].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0]
          if (due === undefined) break
          timers.delete(due[0])
          now = due[1].at
          due[1].fn()
        }
        now = end
      }
    })
  } finally {
    globalThis.setTimeout = real.setTimeout
    globalThis.clearTimeout = real.clearTimeout
    Date.now = real.now
  }
}

t.test('close runs at the deadline, not before, and once', async t => {
  withFakeClock(clock => {
    let calls = 0
    atExpiry(clock.now() + 5000, () => calls++)
    clock.advance(4999)
    t.equal(calls, 0, 'not before')
    clock.advance(1)
    t.equal(calls, 1, 'at the deadline')
    clock.advance(60_000)
    t.equal(calls, 1, 'once')
  })
})

t.test('a deadline past the longest timer is reached in steps, not at once', async t => {
  withFakeClock(clock => {
    let calls = 0
    const thirtyDays = 30 * 24 * 3600 * 1000
    atExpiry(clock.now() + thirtyDays, () => calls++)
    t.ok(clock.delays.every(ms => ms <= LONGEST), 'no timer longer than Node allows')
    clock.advance(thirtyDays - 1)
    t.equal(calls, 0, 'not before the deadline')
    clock.advance(1)
    t.equal(calls, 1, 'at the deadline')
    t.ok(clock.delays.length >= 2, `re-armed (${clock.delays.length} timers)`)
  })
})

t.test('a deadline already past closes at once; the cancel stops a pending one', async t => {
  withFakeClock(clock => {
    let past = 0
    atExpiry(clock.now() - 1, () => past++)
    t.equal(past, 1, 'closed at once')
    t.equal(clock.pending(), 0, 'and nothing left armed')

    let cancelled = 0
    const cancel = atExpiry(clock.now() + 30 * 24 * 3600 * 1000, () => cancelled++)
    clock.advance(LONGEST + 10) // past the first step: the cancel must stop the re-armed timer
    cancel()
    t.equal(clock.pending(), 0, 'no timer left')
    clock.advance(60 * 24 * 3600 * 1000)
    t.equal(cancelled, 0, 'never closed')
  })
})

t.test('with the real clock: a short deadline closes', async t => {
  const started = Date.now()
  await new Promise<void>(resolve => atExpiry(started + 50, resolve))
  t.ok(Date.now() - started >= 49, `after ${Date.now() - started} ms`)
})
