import t from 'tap'
import { encodeBody, encodeComment, encodeFrame, encodeHeartbeat, encodePreamble, encodeRefusal, encodeReset, encodeStreamHead, STREAM_HEADERS } from '../../src/frame.js'

t.test('a string payload is sent as-is, one data: line per line', async t => {
  t.equal(encodeBody('created', 'a\nb\r\nc\rd'), 'event: created\ndata: a\ndata: b\ndata: c\ndata: d\n\n')
})

t.test('anything else is sent as JSON on one line', async t => {
  t.equal(encodeBody(undefined, { id: 42, text: 'x\ny' }), 'data: {"id":42,"text":"x\\ny"}\n\n')
  t.equal(encodeBody(undefined, null), 'data: null\n\n')
  t.equal(encodeBody(undefined, [1, 'two']), 'data: [1,"two"]\n\n')
})

t.test('empty data still makes an event', async t => {
  t.equal(encodeBody(undefined, ''), 'data: \n\n')
})

t.test('unicode survives', async t => {
  const body = encodeBody('ünï', 'żółw 🐢')
  t.equal(encodeFrame('1-0', body).toString('utf8'), 'id: 1-0\nevent: ünï\ndata: żółw 🐢\n\n')
})

t.test('CR/LF in any field cannot end the frame or forge a field', async t => {
  const body = encodeBody('evil\r\nid: 9-9\n\nevent: x', 'ok\n\nid: 666-0\nevent: forged\r\ndata: more\r')
  const frame = encodeFrame('5-0', body).toString()
  t.equal(frame.indexOf('\n\n'), frame.length - 2, 'only the final blank line ends the frame')
  for (const line of frame.slice(0, -2).split('\n')) {
    t.match(line, /^(id: 5-0|event: .*|data: .*)$/, `line ${JSON.stringify(line)} is one of ours`)
  }
  t.notOk(frame.includes('\r'), 'no CR anywhere')
  t.equal(frame.split('\n').filter(l => l.startsWith('id:')).length, 1)
  t.equal(frame.split('\n').filter(l => l.startsWith('event:')).length, 1)
})

t.test('a frame without id has no id line (not resumable)', async t => {
  t.equal(encodeFrame(null, 'data: x\n\n').toString(), 'data: x\n\n')
})

t.test('comments and preamble', async t => {
  t.equal(encodeComment('hb\nx').toString(), ': hb x\n\n')
  t.equal(encodePreamble(1500).toString(), 'retry: 1500\n: connected\n\n')
})

t.test('heartbeat: a comment, or an empty event of the configured name with no id', async t => {
  t.equal(encodeHeartbeat('').toString(), ': heartbeat\n\n')
  t.equal(encodeHeartbeat('ping').toString(), 'event: ping\ndata: \n\n', 'no id line: it does not move Last-Event-ID')
})

t.test('reset: the reason and the topic as JSON data; with an id, the position it moves the client to', async t => {
  t.equal(encodeReset(null, 'history', 'orders').toString(), 'event: reset\ndata: {"reason":"history","topic":"orders"}\n\n')
  t.equal(encodeReset('5-1', 'history-unavailable', null).toString(), 'id: 5-1\nevent: reset\ndata: {"reason":"history-unavailable"}\n\n', 'no topic: every log of the stream')
})

t.test('refusal: the retry delay, a named event saying why, then nothing: no id, so Last-Event-ID stays put', async t => {
  t.equal(encodeRefusal(3000, 503, 'max_clients').toString(),
    'retry: 3000\nevent: refused\ndata: {"status":503,"reason":"max_clients","retryAfterMs":3000}\n\n')
  t.notMatch(encodeRefusal(60000, 429, 'rate_limit').toString(), /^id:/m)
})

t.test('the SSE headers are the same for a stream and for a refusal sent as one', async t => {
  t.same(STREAM_HEADERS, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' })
  const head = encodeStreamHead({ 'content-type': 'text/plain', 'access-control-allow-origin': '*' })
  t.equal(head.match(/content-type/g)?.length, 1, 'a content-type set before is replaced, not doubled')
  t.match(head, /\r\ncontent-type: text\/event-stream\r\n/)
})

t.test('stream head: a 200 with the SSE headers and the other plugins\' headers, delimited by the connection\'s end', async t => {
  const head = encodeStreamHead({ 'access-control-allow-origin': 'https://app.example', vary: ['Origin', 'Accept'], 'x-count': 3, skipped: undefined })
  t.ok(head.startsWith('HTTP/1.1 200 OK\r\n'))
  t.ok(head.endsWith('\r\n\r\n'))
  t.equal(head.indexOf('\r\n\r\n'), head.length - 4, 'one blank line: the end of the head')
  const lines = head.slice(0, -4).split('\r\n').slice(1)
  t.same(lines, [
    'access-control-allow-origin: https://app.example',
    'vary: Origin',
    'vary: Accept',
    'x-count: 3',
    'content-type: text/event-stream',
    'cache-control: no-cache',
    'x-accel-buffering: no',
    'connection: close'
  ], 'a list is one line per value; an undefined header is left out')
  t.notMatch(head, /content-length|transfer-encoding/i, 'no length and no chunking: the body is the stream')
})
