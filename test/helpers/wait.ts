// Waiting for something a test can observe (a log line, a metric, a key in Redis), bounded.

/** Polls `check` every `everyMs` until it holds; throws naming `what` after `ms`. */
export async function until (check: () => boolean | Promise<boolean>, ms: number, what: string, everyMs = 50): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
}
