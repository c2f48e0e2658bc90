// A publisher that keeps publishing through POST /notify, one event after the other, and
// records what each answer says was sent: the reference that e2e tests hold clients to.
import type { Test } from 'tap'
import { notify, type Instance, type SseClient } from './instance.js'

export interface Outcome {
  datum: string
  /** The event's topics as sent (undefined: a broadcast). */
  topic: string | string[] | undefined
  /** When its request began. */
  startedAt: number
  status: number
  /** yes: 202 cluster-wide; no: refused, nothing sent; unknown: the answer says it may have been sent. */
  sent: 'yes' | 'no' | 'unknown'
  body: unknown
}

export interface Publisher {
  readonly outcomes: Outcome[]
  /** The data of the accepted events, in the order they were accepted. */
  accepted: () => string[]
  /** Resolves once `n` more events are accepted; rejects after `ms`. */
  untilAccepted: (n: number, ms?: number) => Promise<void>
  stop: () => Promise<void>
}

/**
 * Publishes `${label}-<i>` to `topicOf(i)`, round robin over `nodes`, until stopped
 * (also when `t` ends). After a refusal it waits 50 ms, as a caller backing off would.
 */
export function startPublisher (t: Test, nodes: Instance[], topicOf: (i: number) => string | string[] | undefined, label: string): Publisher {
  const outcomes: Outcome[] = []
  const state = { stopped: false, waiters: [] as Array<() => void> }
  const accepted = (): string[] => outcomes.filter(o => o.sent === 'yes').map(o => o.datum)
  const loop = (async () => {
    for (let i = 0; !state.stopped; i++) {
      const datum = `${label}-${i}`
      const topic = topicOf(i)
      const startedAt = Date.now()
      let outcome: Outcome
      try {
        // A publish that never answers is a failure to see, not a test that hangs.
        let timer: NodeJS.Timeout | undefined
        const res = await Promise.race([
          notify(nodes[i % nodes.length].url, topic === undefined ? { data: datum } : { topic, data: datum }),
          new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('no answer within 20 s')), 20000) })
        ]).finally(() => clearTimeout(timer))
        const sent = res.status === 202 && res.body.fanout === 'cluster' ? 'yes' : res.status === 202 || /may or may not/.test(String(res.body?.message)) ? 'unknown' : 'no'
        outcome = { datum, topic, startedAt, status: res.status, sent, body: res.body }
      } catch (err) {
        outcome = { datum, topic, startedAt, status: 0, sent: 'unknown', body: String(err) }
      }
      outcomes.push(outcome)
      for (const wake of state.waiters.splice(0)) wake()
      if (outcome.sent !== 'yes') await new Promise(resolve => setTimeout(resolve, 50))
    }
  })()
  const stop = async (): Promise<void> => {
    state.stopped = true
    await loop
  }
  t.teardown(stop)
  return {
    outcomes,
    accepted,
    async untilAccepted (n, ms = 15000) {
      const target = accepted().length + n
      const deadline = Date.now() + ms
      while (accepted().length < target) {
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`publisher ${label}: ${accepted().length - target + n} of ${n} more accepted in ${ms} ms; last answers ${JSON.stringify(outcomes.slice(-3))}`)
        await new Promise<void>(resolve => {
          const timer = setTimeout(resolve, left)
          state.waiters.push(() => { clearTimeout(timer); resolve() })
        })
      }
    },
    stop
  }
}

/** The data of the client's events that `label`'s publisher sent. */
export function received (client: SseClient, label: string): string[] {
  return client.events.map(e => e.data).filter(d => d.startsWith(`${label}-`))
}

/** Waits (bounded) until the client has `datum`, or its stream ended. */
export async function untilReceived (client: SseClient, datum: string, what: string, ms = 15000): Promise<void> {
  await client.until(c => c.ended || c.events.some(e => e.data === datum), ms, `${what}: ${datum}`).catch(() => {})
}
