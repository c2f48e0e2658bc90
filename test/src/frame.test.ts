import t from 'tap'
import { encodeBody, encodeComment, encodeFrame, encodePreamble } from '../../src/frame.js'

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
