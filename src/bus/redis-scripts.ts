// The Lua the Redis bus runs. Every key a script touches is declared in KEYS; on a Redis
// Cluster a call has one log's key (its hash tag), so it runs on the log's own master.
// The records PUBLISH_SCRIPT sends are read by redis-wire.ts's MessageReader; a test
// runs both against a real Redis so they cannot drift.

// KEYS the logs' streams, each also its sharded channel: on a Redis Cluster one key per
// call (a multi-key call gets TRYAGAIN while its slot migrates), on one Redis any number.
// ARGV: maxlen, ttl ms, the events of KEYS[1] as pack() writes them:
// "<uid>\n<priors>\n<topics>\n<origin>\n<body bytes>\n<body>"
// each, then (both optional, '' for none) a deadline in Redis's clock (ms) and the call's
// tag, then the events of KEYS[2], KEYS[3]... A call that reaches Redis after its deadline
// writes nothing (an error LATE): once Redis's clock is past it, SETTLE_SCRIPT can tell for
// sure whether a call whose reply was lost wrote. Each entry keeps the tag (field c).
// Appends each (Redis gives the positions), trims by age, then publishes per log the records
// "<position>\n<uid>\n<priors>\n<topics>\n<origin>\n<body bytes>\n<body>" as one message,
// and returns the positions of every log in order. A step Redis refuses takes that log's
// appends back, so a refused publish leaves nothing to replay: one log's refusal is the
// call's error; with several logs, one refused does not stop the others, and the call
// returns { 'partial', then per log its positions or what Redis said }.
// A log that holds only this call's events (new, or all older ones trimmed) is dumped and
// restored to fit: Redis allocates a new stream node for stream-node-max-bytes (4 KB).
export const PUBLISH_SCRIPT = `
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
local find, sub = string.find, string.sub
local written, messages, refused = {}, {}, {}
local function undo (k, err)
  if #written[k] > 0 then redis.call('XDEL', KEYS[k], unpack(written[k])) end
  written[k] = {}
  refused[k] = type(err) == 'table' and err.err or tostring(err)
end
-- One log's appends and trims; what Redis refused, or nil.
local function append (k)
  local key = KEYS[k]
  local packed = k == 1 and ARGV[3] or ARGV[4 + k]
  local pos, ids, parts, n = 1, {}, {}, 0
  written[k] = ids
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
    -- Trimmed exactly by the log's last append only: an exact trim on every append costs
    -- Redis a quarter of a batch's CPU, and the log ends the same.
    local id = redis.pcall('XADD', key, 'MAXLEN', pos <= #packed and '~' or '=', maxlen, '*', 'u', uid, 'p', priors, 't', topics, 'o', origin, 'b', body, 'c', tag)
    if type(id) == 'table' and id.err then return id end
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
  if ttl > 0 then
    local r = redis.pcall('XTRIM', key, 'MINID', string.format('%d', now - ttl))
    if type(r) == 'table' and r.err then return r end
    r = redis.pcall('PEXPIRE', key, ttl)
    if type(r) == 'table' and r.err then return r end
  end
  messages[k] = table.concat(parts)
end
for k = 1, #KEYS do
  local err = append(k)
  if err then undo(k, err) end
end
for k = 1, #KEYS do
  if not refused[k] then
    local r = redis.pcall('SPUBLISH', KEYS[k], messages[k])
    if type(r) == 'table' and r.err then undo(k, r) end
  end
end
if #KEYS == 1 and refused[1] then return redis.error_reply(refused[1]) end
-- Only memory is at stake here: a user without DUMP or RESTORE keeps the 4 KB node. The
-- dump keeps entries-added and the last and deleted ids the gap check reads; the TTL is
-- given back as it was. The logs a partial call wrote are fitted too.
for k = 1, #KEYS do
  if not refused[k] and redis.pcall('XLEN', KEYS[k]) == #written[k] then
    local dump = redis.pcall('DUMP', KEYS[k])
    if type(dump) == 'string' then
      local left = redis.pcall('PTTL', KEYS[k])
      redis.pcall('RESTORE', KEYS[k], type(left) == 'number' and left > 0 and left or 0, dump, 'REPLACE')
    end
  end
end
local out = {}
if next(refused) then
  out[1] = 'partial'
  for k = 1, #KEYS do out[k + 1] = refused[k] or written[k] end
  return out
end
for k = 1, #KEYS do
  for _, id in ipairs(written[k]) do out[#out + 1] = id end
end
return out
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

// A master's clock, { seconds, microseconds }, read where KEYS[1] lives (on a Redis Cluster
// the call goes to that key's master; the key itself is not read): for the deadline of a
// publish to a master whose clock is not known (the one after a LATE refusal).
export const CLOCK_SCRIPT = `
return redis.call('TIME')
`
