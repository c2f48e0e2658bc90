// The Lua the Redis bus runs. Each script touches one log: its keys are declared in KEYS
// and share the log's hash tag, so on a Redis Cluster it runs on the log's own master.
// The records PUBLISH_SCRIPT sends are read by redis-wire.ts's MessageReader; a test
// runs both against a real Redis so they cannot drift.

// KEYS[1] the log's stream, also its sharded channel (one key: a multi-key call gets
// TRYAGAIN while its slot migrates). ARGV: maxlen, ttl ms, the events as pack() writes them:
// "<uid>\n<priors>\n<topics>\n<origin>\n<body bytes>\n<body>"
// each, then (both optional) a deadline in Redis's clock (ms) and the call's tag. A call
// that reaches Redis after its deadline writes nothing (an error LATE): once Redis's clock
// is past it, SETTLE_SCRIPT can tell for sure whether a call whose reply was lost wrote.
// Each entry keeps the tag (field c). Appends each (Redis gives the positions), trims by age, and publishes the records
// "<position>\n<uid>\n<priors>\n<topics>\n<origin>\n<body bytes>\n<body>" as one message. A refused
// step after the appends takes them back, so a refused publish leaves nothing to replay.
// A log that holds only this call's events (new, or all older ones trimmed) is dumped and
// restored to fit: Redis allocates a new stream node for stream-node-max-bytes (4 KB).
export const PUBLISH_SCRIPT = `
local key = KEYS[1]
local maxlen, ttl = ARGV[1], tonumber(ARGV[2])
local deadline, tag = ARGV[4] or '', ARGV[5] or ''
local now
if deadline ~= '' or ttl > 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if deadline ~= '' and now > tonumber(deadline) then
  return redis.error_reply('LATE the call reached Redis after its deadline, and wrote nothing')
end
local packed, pos, find, sub = ARGV[3], 1, string.find, string.sub
local ids, parts, n = {}, {}, 0
while pos <= #packed do
  local a = find(packed, '\\n', pos, true)
  local b = find(packed, '\\n', a + 1, true)
  local c = find(packed, '\\n', b + 1, true)
  local d = find(packed, '\\n', c + 1, true)
  local e = find(packed, '\\n', d + 1, true)
  local uid, priors, topics = sub(packed, pos, a - 1), sub(packed, a + 1, b - 1), sub(packed, b + 1, c - 1)
  local origin, len = sub(packed, c + 1, d - 1), sub(packed, d + 1, e - 1)
  local stop = e + tonumber(len)
  local body = sub(packed, e + 1, stop)
  pos = stop + 1
  -- Trimmed exactly by the call's last append only: an exact trim on every append costs
  -- Redis a quarter of a batch's CPU, and the log ends the same.
  local id = redis.pcall('XADD', key, 'MAXLEN', pos <= #packed and '~' or '=', maxlen, '*', 'u', uid, 'p', priors, 't', topics, 'o', origin, 'b', body, 'c', tag)
  if type(id) == 'table' and id.err then
    if #ids > 0 then redis.call('XDEL', key, unpack(ids)) end
    return redis.error_reply(id.err)
  end
  ids[#ids + 1] = id
  parts[n + 1] = id
  parts[n + 2] = '\\n'
  parts[n + 3] = uid
  parts[n + 4] = '\\n'
  parts[n + 5] = priors
  parts[n + 6] = '\\n'
  parts[n + 7] = topics
  parts[n + 8] = '\\n'
  parts[n + 9] = origin
  parts[n + 10] = '\\n'
  parts[n + 11] = len
  parts[n + 12] = '\\n'
  parts[n + 13] = body
  n = n + 13
end
local function undo (err)
  redis.call('XDEL', key, unpack(ids))
  return redis.error_reply(type(err) == 'table' and err.err or tostring(err))
end
if ttl > 0 then
  local cutoff = string.format('%d', now - ttl)
  local r = redis.pcall('XTRIM', key, 'MINID', cutoff)
  if type(r) == 'table' and r.err then return undo(r) end
  r = redis.pcall('PEXPIRE', key, ttl)
  if type(r) == 'table' and r.err then return undo(r) end
end
local r = redis.pcall('SPUBLISH', key, table.concat(parts))
if type(r) == 'table' and r.err then return undo(r) end
-- Only memory is at stake here: a user without DUMP or RESTORE keeps the 4 KB node. The
-- dump keeps entries-added and the last and deleted ids the gap check reads; the TTL is
-- given back as it was.
if redis.pcall('XLEN', key) == #ids then
  local dump = redis.pcall('DUMP', key)
  if type(dump) == 'string' then
    local left = redis.pcall('PTTL', key)
    redis.pcall('RESTORE', key, type(left) == 'number' and left > 0 and left or 0, dump, 'REPLACE')
  end
end
return ids
`

// KEYS[1] the log's stream. ARGV: the reader's position ('' = it saw nothing: the log was
// empty when it started), then the mode: 'read'; 'head' (only the newest position);
// 'since' (the position is a time: what came after it, never a gap); 'catch-up' (an
// instance whose link came back takes a log begun again after its position, as after a
// Redis restart without persistence, as no gap: it was connected while the old one was written). Returns { newest position or '', gap 0/1, then
// position/uid/priors/topics/origin/body for each event after it }. A position covers a resume
// only while it is in the log: one trimmed away, or from a log that was lost and begun
// again (restart, FLUSHALL, eviction, expiry, a failover that dropped writes), is a gap.
export const HISTORY_SCRIPT = `
local key, after, mode = KEYS[1], ARGV[1], ARGV[2]
local head_only, begun_again = mode == 'head', mode == 'catch-up'
local function gt (a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
if redis.call('EXISTS', key) == 0 then
  if after == '' or begun_again or mode == 'since' then return { '', 0 } end
  return { '', 1 }
end
local info
local function field (name)
  info = info or redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do if info[i] == name then return info[i + 1] end end
end
local top = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
local last = #top > 0 and top[1][1] or field('last-generated-id')
if head_only then return { last, 0 } end
local out = { last, 0 }
local from
if mode == 'since' then
  from = '(' .. after
else
-- Not in the log: trimmed away, or from a log that was lost; what remains after it
-- follows the reset.
if after == '' then
  if field('entries-added') > field('length') then out[2] = 1 end
  from = '-'
else
  if after == last then return out end
  if #redis.call('XRANGE', key, after, after) == 0 then
    local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
    local new = begun_again and field('entries-added') == field('length') and #first > 0 and gt(first[1][1], after)
    if not new then out[2] = 1 end
  end
  from = '(' .. after
end
end
for _, e in ipairs(redis.call('XRANGE', key, from, '+')) do
  local f = e[2]
  out[#out + 1] = e[1]
  out[#out + 1] = f[2]
  out[#out + 1] = f[4]
  out[#out + 1] = f[6]
  out[#out + 1] = f[8]
  out[#out + 1] = f[10]
end
return out
`

// KEYS[1] the log's stream. ARGV: a publish call's deadline (Redis ms, see PUBLISH_SCRIPT),
// its tag, the ms since it was sent (this host's clock), the log's ttl (ms, 0 = none) and
// maxlen. Before Redis's clock passes the deadline the call may still arrive: { 'wait', ms }.
// After, { 'written', the positions of its entries } is final: none means it wrote nothing
// and never will. It can only have written after `now - elapsed`, in this master's clock;
// SLACK more covers the transit of this call and clocks that step. { 'unknown' } when its
// entries may have been deleted: trimmed by length (the log is full and its oldest entry
// is newer than that), taken back (XINFO's max-deleted-entry-id, which trims do not move)
// or aged out (the ttl is not far beyond the elapsed time).
export const SETTLE_SCRIPT = `
local key, deadline, tag = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local elapsed, ttl, maxlen = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local SLACK = 30000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now <= deadline then return { 'wait', deadline - now + 1 } end
if ttl > 0 and elapsed + SLACK >= ttl then return { 'unknown' } end
local out = { 'written' }
if redis.call('EXISTS', key) == 0 then return out end
local floor = now - elapsed - SLACK
local function ms (id) return tonumber(string.match(id, '^(%d+)-')) end
local info = redis.call('XINFO', 'STREAM', key)
local length, first
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' and ms(info[i + 1]) >= floor then return { 'unknown' } end
  if info[i] == 'length' then length = info[i + 1] end
  if info[i] == 'first-entry' then first = info[i + 1] end
end
if length >= maxlen and type(first) == 'table' and ms(first[1]) >= floor then return { 'unknown' } end
-- Newest first, back to the floor.
local found, start = {}, '+'
while true do
  local batch = redis.call('XREVRANGE', key, start, '-', 'COUNT', 500)
  for _, e in ipairs(batch) do
    if ms(e[1]) < floor then batch = {} break end
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'c' then
        if f[i + 1] == tag then found[#found + 1] = e[1] end
        break
      end
    end
  end
  if #batch < 500 then break end
  start = '(' .. batch[#batch][1]
end
for i = #found, 1, -1 do out[#out + 1] = found[i] end
return out
`
