// What a request may read and publish: topic patterns as tokens list them.

/**
 * Topics as a token lists them: a name matches itself; a pattern ending in `*` matches
 * every topic starting with what precedes the `*` (`orders:*` matches `orders:1` and
 * `orders:`, not `orders`); `*` alone matches every topic. No other character is special.
 */
export class TopicPatterns {
  readonly all: boolean
  private readonly exact = new Set<string>()
  private readonly prefixes: string[] = []

  constructor (patterns: readonly string[]) {
    for (const p of patterns) {
      if (p.endsWith('*')) this.prefixes.push(p.slice(0, -1))
      else if (p !== '') this.exact.add(p)
    }
    this.all = this.prefixes.includes('')
  }

  matches (topic: string): boolean {
    if (this.all || this.exact.has(topic)) return true
    for (const prefix of this.prefixes) if (topic.startsWith(prefix)) return true
    return false
  }
}

export type Action = 'subscribe' | 'publish'

/** What one request may do. */
export interface Access {
  /** 'open' when auth is off, 'anonymous' without a token, else the token's kind. */
  who: 'open' | 'anonymous' | 'token' | 'jwt'
  subscribe: TopicPatterns
  publish: TopicPatterns
  /** When the credential stops being valid (ms since the epoch); null = never. */
  expiresAt: number | null
}

export const EVERY = new TopicPatterns(['*'])
export const NONE = new TopicPatterns([])
export const OPEN: Access = { who: 'open', subscribe: EVERY, publish: EVERY, expiresAt: null }

/** null when `access` allows `action` on every topic (null topics = a broadcast), else why not. */
export function refusedTopics (access: Access, action: Action, topics: string[] | null): string | null {
  const allowed = access[action]
  if (allowed.all) return null
  const whose = access.who === 'anonymous' ? 'a stream without a token (PUBLIC_TOPICS)' : 'this token'
  if (topics === null) return `${whose} may not publish a broadcast (an event without topic needs the publish pattern "*")`
  for (const topic of topics) {
    if (!allowed.matches(topic)) return `${whose} may not ${action === 'subscribe' ? 'read' : 'publish to'} topic "${topic}"`
  }
  return null
}
