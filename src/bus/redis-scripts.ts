// The Lua the Redis bus runs. The records PUBLISH_SCRIPT writes are read by redis-wire.ts;
// test/src/bus/redis-wire.test.ts runs both against a real Redis so they cannot drift.

const ID_HELPERS = `
local function parse (id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
local function gt (a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am > bm or (am == bm and as > bs)
end
local function now_ms ()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// KEYS[1] last id; ARGV: prefix, maxlen, ttl ms, channel, the events as pack() writes them.
// Topics are joined by ','; '' is a broadcast. Origin names the instance that already
// delivered the event itself during an outage ('' normally). Returns the ids. The whole
// batch goes out as one Pub/Sub message.
export const PUBLISH_SCRIPT = ID_HELPERS + `
local prefix, maxlen, ttl, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local call = redis.call
local now = now_ms()
local ms, seq = 0, -1
local last = call('GET', KEYS[1])
if last then ms, seq = parse(last) end
-- Every id of one call shares its millisecond: now, or the last id's if the clock is behind.
if now > ms then ms, seq = now, -1 end
local stem = string.format('%d', ms) .. '-'
local ids, parts, keysof, touched = {}, {}, {}, {}
local n = 0
local packed, pos, find, sub = ARGV[5], 1, string.find, string.sub
while pos <= #packed do
  local a = find(packed, '\\n', pos, true)
  local b = find(packed, '\\n', a + 1, true)
  local c = find(packed, '\\n', b + 1, true)
  local topics, origin = sub(packed, pos, a - 1), sub(packed, a + 1, b - 1)
  local stop = c + tonumber(sub(packed, b + 1, c - 1))
  local body = sub(packed, c + 1, stop)
  pos = stop + 1
  seq = seq + 1
  local id = stem .. seq
  ids[#ids + 1] = id
  local keys = keysof[topics]
  if not keys then
    keys = {}
    if topics == '' then
      keys[1] = prefix .. 'b'
    else
      for topic in string.gmatch(topics, '[^,]+') do keys[#keys + 1] = prefix .. 't:' .. topic end
    end
    for k = 1, #keys do touched[keys[k]] = true end
    keysof[topics] = keys
  end
  for k = 1, #keys do
    call('XADD', keys[k], 'MAXLEN', maxlen, id, 't', topics, 'o', origin, 'b', body)
  end
  -- The record carries the finished SSE frame ("id: <id>\\n" + body), so receivers only
  -- take a view of it. The pieces are joined once, by table.concat, below.
  parts[n + 1] = id
  parts[n + 2] = '\\n'
  parts[n + 3] = topics
  parts[n + 4] = '\\n'
  parts[n + 5] = origin
  parts[n + 6] = '\\n'
  parts[n + 7] = #id + 5 + #body
  parts[n + 8] = '\\nid: '
  parts[n + 9] = id
  parts[n + 10] = '\\n'
  parts[n + 11] = body
  n = n + 11
end
if ttl > 0 then
  local cutoff = string.format('%d', now - ttl)
  for key in pairs(touched) do
    call('XTRIM', key, 'MINID', cutoff)
    call('PEXPIRE', key, ttl)
  end
end
call('SET', KEYS[1], ids[#ids])
call('PUBLISH', channel, table.concat(parts))
return ids
`

// KEYS[1] last id; ARGV: after id, ttl ms, unknown-is-gap 0/1, then stream keys.
// Returns { last id, gap 0/1, then id/topics/origin/body quads (unsorted, may repeat) }.
// A stream that lost entries (trimmed by size or age) covers a resume only from its
// first remaining entry on.
export const HISTORY_SCRIPT = ID_HELPERS + `
local after, ttl, unknown_gap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local last = redis.call('GET', KEYS[1])
if not last then return { '', unknown_gap } end
if gt(after, last) then return { last, unknown_gap } end
if not gt(last, after) then return { last, 0 } end
local gap = 0
if ttl > 0 and parse(after) < now_ms() - ttl then gap = 1 end
local out = { last, 0 }
for i = 4, #ARGV do
  local key = ARGV[i]
  if redis.call('EXISTS', key) == 1 then
    local info = redis.call('XINFO', 'STREAM', key)
    local f = {}
    for j = 1, #info, 2 do f[info[j]] = info[j + 1] end
    if f['entries-added'] > f['length'] then
      local oldest = f['length'] > 0 and f['first-entry'][1] or f['last-generated-id']
      if gt(oldest, after) then gap = 1 end
    end
    for _, e in ipairs(redis.call('XRANGE', key, '(' .. after, '+')) do
      out[#out + 1] = e[1]
      out[#out + 1] = e[2][2]
      out[#out + 1] = e[2][4]
      out[#out + 1] = e[2][6]
    end
  end
end
out[2] = gap
return out
`
