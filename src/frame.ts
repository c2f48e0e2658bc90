// The SSE wire format. A frame is encoded once per event, never once per client.

const LINE_BREAK = /\r\n|\r|\n/

/**
 * The part of a frame after its `id:` line: `event:` and one `data:` line per line of
 * the payload. A string is sent as-is, anything else as JSON (which has no raw line
 * breaks). Line breaks in `event` are stripped so no input can end a frame early.
 */
export function encodeBody (event: string | undefined, data: unknown): string {
  let out = ''
  if (event !== undefined && event !== '') {
    out += `event: ${event.replace(/[\r\n]/g, '')}\n`
  }
  // JSON has no raw line breaks; only a string payload can need several data: lines.
  if (typeof data !== 'string') return out + `data: ${JSON.stringify(data) ?? 'null'}\n\n`
  if (!data.includes('\n') && !data.includes('\r')) return out + `data: ${data}\n\n`
  const lines = data.split(LINE_BREAK)
  for (let i = 0; i < lines.length; i++) {
    out += `data: ${lines[i]}\n`
  }
  return out + '\n'
}

/** A whole frame; `id` null means an event that cannot be resumed from (no `id:` line). */
export function encodeFrame (id: string | null, body: string): Buffer {
  return Buffer.from(id === null ? body : `id: ${id}\n${body}`)
}

/** A comment line: ignored by EventSource, keeps proxies from closing an idle stream. */
export function encodeComment (text: string): Buffer {
  return Buffer.from(`: ${text.replace(/[\r\n]/g, ' ')}\n\n`)
}

/** The first bytes of every stream: the reconnection delay and a comment. */
export function encodePreamble (retryMs: number): Buffer {
  return Buffer.from(`retry: ${retryMs}\n: connected\n\n`)
}

/** The idle-stream keepalive: a comment, or an empty event of that name when one is set. */
export function encodeHeartbeat (eventName: string): Buffer {
  return eventName === '' ? encodeComment('heartbeat') : Buffer.from(`event: ${eventName}\ndata: \n\n`)
}

/** Why a reset is sent: history no longer covers the position, or could not be read. */
export const RESET_REASONS = ['history', 'history-unavailable'] as const
export type ResetReason = typeof RESET_REASONS[number]

/**
 * The gap signal: history cannot cover the client's position in `topic` (null: the
 * broadcasts, or every log when history could not be read). With an id, it moves the
 * client's cursor past the gap, so it does not ask for the same gap again.
 */
export function encodeReset (id: string | null, reason: ResetReason, topic: string | null): Buffer {
  const data = topic === null ? { reason } : { reason, topic }
  return Buffer.from(`${id === null ? '' : `id: ${id}\n`}event: reset\ndata: ${JSON.stringify(data)}\n\n`)
}

/**
 * A temporary refusal as a stream that ends at once: EventSource reconnects after `retryMs`
 * by itself (on a non-200 answer it gives up for good). No id, so Last-Event-ID stays put.
 */
export function encodeRefusal (retryMs: number, status: number, reason: string): Buffer {
  return Buffer.from(`retry: ${retryMs}\nevent: refused\ndata: ${JSON.stringify({ status, reason, retryAfterMs: retryMs })}\n\n`)
}

/** The headers of every SSE answer: streams, and refusals sent as streams. */
export const STREAM_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' } as const

/**
 * The status line and headers of a stream, written straight to the socket and delimited
 * by the connection's end; `headers` are those other plugins set (CORS).
 */
export function encodeStreamHead (headers: Record<string, string | number | string[] | undefined>): string {
  let head = 'HTTP/1.1 200 OK\r\n'
  for (const [name, value] of Object.entries({ ...headers, ...STREAM_HEADERS, connection: 'close' })) {
    if (value === undefined) continue
    for (const v of Array.isArray(value) ? value : [value]) head += `${name}: ${v}\r\n`
  }
  return head + '\r\n'
}
