// The refusals plugin: requests that arrive while the instance closes, on every route.
import t from 'tap'
import { requestDuringClose, startInstance } from '../helpers/instance.js'

const FASTIFY_503 = '{"statusCode":503,"error":"Service Unavailable","message":"Service Unavailable"}'

t.test('while closing, a route that serves no stream answers the plain 503 Fastify did, whatever it accepts', async t => {
  for (const accept of ['*/*', 'text/event-stream']) {
    const { app, url } = await startInstance(t)
    const answer = await requestDuringClose(app, url, `GET /health HTTP/1.1\r\nhost: x\r\naccept: ${accept}\r\n\r\n`)
    t.match(answer, /^HTTP\/1.1 503 /, accept)
    t.match(answer, /\r\nconnection: close\r\n/i, 'the connection is not kept')
    t.notMatch(answer, /retry-after/i)
    t.ok(answer.endsWith(`\r\n\r\n${FASTIFY_503}`), 'the same body')
    t.equal(app.refusals.refused.shutdown, 0, 'only streams are counted')
  }
})

t.test('a publish during close gets that 503 too', async t => {
  const { app, url } = await startInstance(t)
  const body = '{"data":"late"}'
  const answer = await requestDuringClose(app, url, `POST /notify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  t.match(answer, /^HTTP\/1.1 503 /)
  t.ok(answer.endsWith(FASTIFY_503))
})
