// A deadline as a timer, however far away it is (setTimeout alone stops at ~24.8 days).

const LONGEST_TIMER = 2 ** 31 - 1

/** Calls `close` at `expiresAt` (ms since the epoch); returns a cancel. */
export function atExpiry (expiresAt: number, close: () => void): () => void {
  let timer: NodeJS.Timeout
  const arm = (): void => {
    const left = expiresAt - Date.now()
    if (left <= 0) { close(); return }
    timer = setTimeout(arm, Math.min(left, LONGEST_TIMER))
  }
  arm()
  return () => clearTimeout(timer)
}
