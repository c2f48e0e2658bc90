// What the logs never show: credentials in headers, cookies and URLs.

/** Query parameters that carry credentials; their values never reach a log. */
const SECRET_PARAMS = new Set(['token', 'access_token', 'authorization', 'jwt'])

/** The URL with the values of credential parameters replaced (names compared decoded). */
export function redactQuery (url: string): string {
  const q = url.indexOf('?')
  if (q === -1) return url
  const params = url.slice(q + 1).split('&').map(param => {
    const eq = param.indexOf('=')
    const key = eq === -1 ? param : param.slice(0, eq)
    let name = key
    try { name = decodeURIComponent(key.replace(/\+/g, ' ')) } catch {}
    return SECRET_PARAMS.has(name.toLowerCase()) ? `${key}=[Redacted]` : param
  })
  return url.slice(0, q + 1) + params.join('&')
}

/** The fields of a request that the log serializer reads. */
interface LoggedRequest {
  method: string
  url: string
  headers?: Record<string, string | string[] | undefined>
  host: string
  ip: string
  socket?: { remotePort?: number }
}

/** pino options: Fastify's own request serializer, with the URL (which may carry ?token=) redacted. */
export const logRedaction = {
  redact: ['req.headers.authorization', 'req.headers.cookie', 'req.query.token'],
  serializers: {
    req (req: LoggedRequest) {
      return {
        method: req.method,
        url: redactQuery(req.url),
        version: req.headers?.['accept-version'] as string | undefined,
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort
      }
    }
  }
}
