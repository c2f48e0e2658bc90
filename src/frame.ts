// The SSE wire format. A frame is encoded once per event, never once per client.

const LINE_BREAK = /\r\n|\r|\n/

/** Names a frame may carry in `event:`; anything else could forge a field. */
export const EVENT_NAME_PATTERN = '^[A-Za-z0-9_.:-]{1,64}$'

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
