// What is wrong with a POST /notify body, found before and after its schema is checked.
import { eventNameRule, topicRule } from './topic.js'

/** A schema violation as Ajv reports it. */
export interface ValidationError {
  keyword: string
  instancePath: string
  params: Record<string, unknown>
  message?: string
}

/** Whether the JSON text nests deeper than `max` (a scan of the bytes, before parsing). */
export function nestsDeeper (json: Buffer, max: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json[i]
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped byte
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true
    } else if (c === 0x7d || c === 0x5d) {
      depth--
    }
  }
  return false
}

/** One line naming the field at fault, in the caller's terms (body, body[2].topic). */
export function describeError (errors: ValidationError[], single: boolean, maxTopicLength: number, maxEventLength = 64): string {
  // The deepest error is the most specific; at one depth, a union (anyOf) reports its
  // branches' type mismatches first, so prefer what is not a type mismatch.
  const depth = Math.max(...errors.map(x => x.instancePath.length))
  const deepest = errors.filter(x => x.instancePath.length === depth)
  const e = deepest.find(x => x.keyword !== 'type' && x.keyword !== 'anyOf') ??
    deepest.find(x => x.keyword === 'anyOf') ?? deepest[0]
  let path = e.instancePath
  if (single) path = path.replace(/^\/0/, '')
  const field = 'body' + path.replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.')
  const params = e.params
  switch (e.keyword) {
    case 'additionalProperties': return `${field} has an unknown property '${String(params.additionalProperty)}' (allowed: topic, event, data)`
    case 'required': return `${field} must have the property '${String(params.missingProperty)}'`
    case 'anyOf': return `${field} must be a topic name or an array of topic names`
    case 'pattern':
    case 'minLength':
    case 'maxLength':
      return `${field} must be ${field.includes('.event') ? eventNameRule(maxEventLength) : topicRule(maxTopicLength)}`
    case 'maxItems': return `${field} must have at most ${String(params.limit)} items`
    case 'minItems': return `${field} must have at least ${String(params.limit)} item`
    case 'type':
      // (A request without any body fails as a whole: it was not wrapped as one event.)
      return params.type === 'object' || (field === 'body' && params.type === 'array')
        ? `${field} must be an event object like {"topic": "orders", "data": {...}}${field === 'body' ? ' or an array of them' : ''}`
        : `${field} must be ${String(params.type)}`
    default: return `${field} ${e.message ?? 'is invalid'}`
  }
}
