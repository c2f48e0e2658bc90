// TRUST_PROXY as the predicate Fastify's trustProxy option takes.
import proxyAddr from '@fastify/proxy-addr'
import { splitList } from './config.js'

/** Addresses, CIDRs and the presets loopback, linklocal, uniquelocal, comma-separated. */
export function trustedProxies (setting: string): (address: string, hop: number) => boolean {
  const list = splitList(setting)
  if (list.length === 0) return () => false
  try {
    return proxyAddr.compile(list)
  } catch (err) {
    throw new Error(`TRUST_PROXY: ${(err as Error).message}`)
  }
}
