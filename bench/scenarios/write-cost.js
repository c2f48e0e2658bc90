// What one write(2) to a loopback TCP socket costs as the bytes per write grow: the
// question behind pacing a sequential publisher (does a write carrying 10 events cost
// 10x, or about what a write of one costs?). This process holds N sockets accepted from a
// child process that only reads and discards; per round it writes one buffer of k frames
// (230 bytes each) to every socket in one synchronous loop and takes the loop's time over
// N, for each k in turn (order reversed every other round), 300 ms apart so the reader
// drains. Reports per k the median and minimum µs per write.
// Usage: node bench/scenarios/write-cost.js [--sockets=10000] [--rounds=8] [--ks=1,2,4,8,16,32]
// Bounded: a hard time limit; the reader dies with this process.
import { fork } from 'node:child_process'
import net from 'node:net'
import { median, table } from '../harness/report.js'

const flags = Object.fromEntries(process.argv.slice(2).filter(a => a.startsWith('--')).map(a => { const at = a.indexOf('='); return at === -1 ? [a.slice(2), 'true'] : [a.slice(2, at), a.slice(at + 1)] }))

if (flags.reader !== undefined) {
  // The reader: N connections, 50 connecting at a time, reading and discarding.
  const [port, n] = [Number(flags.port), Number(flags.sockets)]
  let started = 0
  const one = () => {
    if (started++ >= n) return
    const s = net.connect(port, '127.0.0.1')
    s.on('data', () => {})
    s.on('connect', one)
  }
  for (let i = 0; i < 50; i++) one()
  process.on('disconnect', () => process.exit(0))
} else {
  const SOCKETS = Number(flags.sockets ?? 10000)
  const ROUNDS = Number(flags.rounds ?? 8)
  const KS = (flags.ks ?? '1,2,4,8,16,32').split(',').map(Number)
  const FRAME = 230
  setTimeout(() => { console.error('write-cost: time limit'); process.exit(1) }, 600_000).unref()
  const socks = []
  const server = net.createServer(s => { s.setNoDelay(true); socks.push(s) })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  const reader = fork(new URL(import.meta.url), ['--reader', `--port=${server.address().port}`, `--sockets=${SOCKETS}`])
  while (socks.length < SOCKETS) await new Promise(resolve => setTimeout(resolve, 50))
  await new Promise(resolve => setTimeout(resolve, 500))
  const us = Object.fromEntries(KS.map(k => [k, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const k of round % 2 === 0 ? KS : [...KS].reverse()) {
      const chunk = Buffer.alloc(k * FRAME, 'x')
      const t0 = performance.now()
      for (const s of socks) s.write(chunk)
      us[k].push((performance.now() - t0) * 1000 / socks.length)
      await new Promise(resolve => setTimeout(resolve, 300))
    }
  }
  const base = median(us[KS[0]])
  console.log(`### One write to each of ${socks.length} loopback sockets, ${ROUNDS} rounds`)
  console.log(table(['frames per write', 'bytes', 'µs per write, median', 'min', `vs ${KS[0]} frame${KS[0] === 1 ? '' : 's'}`],
    KS.map(k => [k, k * FRAME, median(us[k]).toFixed(2), Math.min(...us[k]).toFixed(2), `${(median(us[k]) / base).toFixed(2)}x`])))
  reader.kill()
  for (const s of socks) s.destroy()
  server.close()
}
