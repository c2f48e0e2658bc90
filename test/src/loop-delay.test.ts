import t from 'tap'
import { LOOP_DELAY_RESOLUTION_MS, watchLoopDelay } from '../../src/loop-delay.js'

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
const block = (ms: number): void => {
  const until = Date.now() + ms
  while (Date.now() < until);
}

t.test('an idle loop: a sample every resolution, each on time give or take a few ms', async t => {
  const d = watchLoopDelay()
  t.teardown(() => d.close())
  d.reset()
  await sleep(LOOP_DELAY_RESOLUTION_MS * 5 + 50)
  const w = d.window()
  t.ok(w.count >= 3 && w.count <= 6, `${w.count} samples in ${LOOP_DELAY_RESOLUTION_MS * 5 + 50} ms`)
  t.ok(w.min / 1e6 < 20, `the least late: ${w.min / 1e6} ms (the resolution is not counted)`)
})

t.test('a 300 ms block shows in the window; a reset starts a new one and keeps the totals', async t => {
  const d = watchLoopDelay()
  t.teardown(() => d.close())
  d.reset()
  // The monitor's first tick after a reset records nothing: block after it.
  await sleep(LOOP_DELAY_RESOLUTION_MS + 20)
  const before = d.totals()
  block(300)
  await sleep(20)
  const w = d.window()
  t.ok(w.max / 1e6 >= 150, `max ${w.max / 1e6} ms`)
  t.ok(w.percentile(99) / 1e6 >= 150, `p99 ${w.percentile(99) / 1e6} ms`)
  d.reset()
  t.equal(d.window().count, 0, 'a reset empties the window')
  t.equal(d.window().max, 0, 'an empty window says 0')
  const after = d.totals()
  t.ok(after.count > before.count, 'the totals keep the samples')
  t.ok((after.sum - before.sum) / 1e6 >= 150, `and their delay (${(after.sum - before.sum) / 1e6} ms)`)
})

t.test('two users share one monitor; the last one closed stops it', async t => {
  const a = watchLoopDelay()
  const b = watchLoopDelay()
  await sleep(LOOP_DELAY_RESOLUTION_MS * 2 + 20)
  t.equal(a.window().count, b.window().count, 'one window for both')
  a.close()
  a.close()
  const count = b.window().count
  await sleep(LOOP_DELAY_RESOLUTION_MS * 2 + 20)
  t.ok(b.window().count > count, 'still sampling for the other (closing twice counts once)')
  b.close()
  const last = b.window().count
  await sleep(LOOP_DELAY_RESOLUTION_MS * 3)
  t.equal(b.window().count, last, 'nothing samples once both are closed')
})
