// A JWKS endpoint on a free port that a test can rotate, break, stop and start again,
// counting the fetches it answers. Closed when the test ends.
import type { Test } from 'tap'
import type { JsonWebKey } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface JwksServer {
  url: string
  /** What GET answers with (`{ keys }`); change it to rotate. */
  keys: JsonWebKey[]
  /** Answer this status (and no JWKS) instead of 200. */
  status: number
  /** Requests received, whatever was answered. */
  requests: number
  up: () => Promise<void>
  down: () => Promise<void>
}

/** Starts the endpoint; `down: true` only reserves its port (start it with up()). */
export async function startJwksServer (t: Test, keys: JsonWebKey[] = [], opts: { down?: boolean } = {}): Promise<JwksServer> {
  const server = createServer((_req, res) => {
    jwks.requests++
    if (jwks.status !== 200) {
      res.writeHead(jwks.status).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: jwks.keys }))
  })
  let listening = false
  let port = 0
  const up = async (): Promise<void> => {
    if (listening) return
    await new Promise<void>(resolve => server.listen(port, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
    listening = true
  }
  const down = async (): Promise<void> => {
    if (!listening) return
    listening = false
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }
  await up()
  const jwks: JwksServer = { url: `http://127.0.0.1:${port}/.well-known/jwks.json`, keys, status: 200, requests: 0, up, down }
  if (opts.down === true) await down()
  t.teardown(down)
  return jwks
}
