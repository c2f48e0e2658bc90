import t from 'tap'
import { limitsSet, Pressure, strainOf, type PressureLimits } from '../../src/pressure.js'

const off: PressureLimits = { maxEventLoopDelayMs: 0, maxEventLoopUtilization: 0, maxHeapUsedBytes: 0, maxRssBytes: 0, sampleIntervalMs: 100 }
const calm = { eventLoopDelay: 1, heapUsedBytes: 1e6, rssBytes: 1e7, eventLoopUtilization: 0.1 }
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

t.test('strainOf: each limit at 0 is off; the first one over, in a fixed order, with what was measured', async t => {
  t.equal(strainOf(off, { eventLoopDelay: 1e9, heapUsedBytes: 1e12, rssBytes: 1e12, eventLoopUtilization: 1 }), null, 'all off')
  t.notOk(limitsSet(off))
  t.equal(strainOf({ ...off, maxHeapUsedBytes: 2e6 }, calm), null, 'under the limit')
  t.same(strainOf({ ...off, maxHeapUsedBytes: 5e5 }, calm), { type: 'heapUsedBytes', value: 1e6 })
  t.same(strainOf({ ...off, maxRssBytes: 5e6 }, calm), { type: 'rssBytes', value: 1e7 })
  t.same(strainOf({ ...off, maxEventLoopUtilization: 0.05 }, calm), { type: 'eventLoopUtilization', value: 0.1 })
  t.same(strainOf({ ...off, maxEventLoopDelayMs: 100 }, { ...calm, eventLoopDelay: 150 }), { type: 'eventLoopDelay', value: 150 })
  const all = { maxEventLoopDelayMs: 1, maxEventLoopUtilization: 0.01, maxHeapUsedBytes: 1, maxRssBytes: 1, sampleIntervalMs: 100 }
  t.equal(strainOf(all, { ...calm, eventLoopDelay: 2 })?.type, 'eventLoopDelay', 'the delay first')
  t.equal(strainOf(all, calm)?.type, 'heapUsedBytes', 'then the heap')
  t.equal(strainOf({ ...all, maxHeapUsedBytes: 0 }, calm)?.type, 'rssBytes', 'then resident memory')
  t.ok(limitsSet({ ...off, maxRssBytes: 1 }))
})

t.test('a loop that blocks is under pressure at the next sample, and calm again at the one after', async t => {
  const p = new Pressure({ ...off, maxEventLoopDelayMs: 100, sampleIntervalMs: 400 })
  p.start()
  t.teardown(() => p.stop())
  await sleep(450)
  t.equal(p.strain, null, 'idle: calm')
  const until = Date.now() + 600
  while (Date.now() < until);
  await sleep(20)
  t.equal(p.strain?.type, 'eventLoopDelay', `blocked 600 ms: ${JSON.stringify(p.strain)}`)
  t.ok((p.strain?.value ?? 0) > 100)
  await sleep(450)
  t.equal(p.strain, null, 'calm again')
})

t.test('memory and utilization limits, and no sampling at all without a limit', async t => {
  const heap = new Pressure({ ...off, maxHeapUsedBytes: 1, sampleIntervalMs: 20 })
  heap.start()
  t.teardown(() => heap.stop())
  const rss = new Pressure({ ...off, maxRssBytes: 1, sampleIntervalMs: 20 })
  rss.start()
  t.teardown(() => rss.stop())
  const busy = new Pressure({ ...off, maxEventLoopUtilization: 0.5, sampleIntervalMs: 200 })
  busy.start()
  t.teardown(() => busy.stop())
  const none = new Pressure(off)
  none.start()
  await sleep(60)
  t.equal(heap.strain?.type, 'heapUsedBytes')
  t.equal(rss.strain?.type, 'rssBytes')
  const until = Date.now() + 250
  while (Date.now() < until);
  await sleep(10)
  t.equal(busy.strain?.type, 'eventLoopUtilization', `a busy loop: ${JSON.stringify(busy.strain)}`)
  t.equal(none.strain, null)
})
