// Topic names and event names: which characters they may have, and how to say so.

/** Topic names: letters, digits and _ . : - @ / (no ',' '*' '?' '{' or spaces). */
export const TOPIC_CHARS = /^[A-Za-z0-9_.:@/-]+$/

/** Event names: nothing that could end an `event:` line or forge a field. */
export const EVENT_NAME_CHARS = 'A-Za-z0-9_.:-'

/** The rule for a topic name, as error messages state it. */
export function topicRule (maxLength: number): string {
  return `1-${maxLength} characters of A-Z a-z 0-9 _ . : @ / -`
}

/** The rule for an event name, as error messages state it. */
export function eventNameRule (maxLength: number): string {
  return `1-${maxLength} characters of A-Z a-z 0-9 _ . : -`
}

/** The JSON-schema pattern of an event name up to `maxLength` characters. */
export function eventNamePattern (maxLength: number): string {
  return `^[${EVENT_NAME_CHARS}]{1,${maxLength}}$`
}

/** A stream's topics (deduplicated), or a message naming what is wrong with them. */
export function parseTopics (raw: string | string[] | undefined, maxTopics: number, maxLength: number): string[] | string {
  const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]
  if (list.length > maxTopics) return `at most ${maxTopics} topic parameters per stream, got ${list.length}`
  for (const topic of list) {
    if (topic.length === 0 || topic.length > maxLength || !TOPIC_CHARS.test(topic)) {
      return `topic ${JSON.stringify(topic.slice(0, 200))} is invalid: ${topicRule(maxLength)}`
    }
  }
  return [...new Set(list)]
}
