-- ARGV: now, limit, before ('' = newest) -> {} or {lead, first position, turn starts, messages, events}
-- The events holding the page's turns are found by galloping back from the newest event, so the
-- cost follows the page's distance from the end, not the session's length.
if expired(ARGV[1]) then return {} end
local total = redis.call('LLEN', KEYS[3])
if total == 0 then return {} end
local lead = total - tonumber(redis.call('HGET', KEYS[1], 'user_messages') or '0')
local hi = total
if ARGV[3] ~= '' then hi = math.min(total, tonumber(ARGV[3]) - 1 + lead) end
if hi < 1 then return {lead, 0, {}, {}, {}} end
local lo = math.max(1, hi - tonumber(ARGV[2]) + 1)
local starts = redis.call('LRANGE', KEYS[3], lo - 1, hi - 1)
local stop = redis.call('LLEN', KEYS[2])
if hi < total then stop = tonumber(redis.call('LINDEX', KEYS[3], hi)) end
local first = tonumber(starts[1])
local last = tonumber(starts[#starts])
local msgs = redis.call('LRANGE', KEYS[2], first, stop - 1)
local function offset(entry) return tonumber(string.match(entry or '', '^(%d+)') or '0') end
local evs = {}
local count = redis.call('LLEN', KEYS[4])
if count > 0 then
  local right, left, step = count - 1, count - 1, 1
  while left > 0 and offset(redis.call('LINDEX', KEYS[4], left)) > first do
    right = left - 1
    left = math.max(0, left - step)
    step = step * 2
  end
  while left < right do
    local mid = math.floor((left + right + 1) / 2)
    if offset(redis.call('LINDEX', KEYS[4], mid)) <= first then left = mid else right = mid - 1 end
  end
  local pos = left
  repeat
    local chunk = redis.call('LRANGE', KEYS[4], pos, pos + #starts + 8)
    for _, e in ipairs(chunk) do evs[#evs + 1] = e end
    pos = pos + #chunk
  until #chunk == 0 or pos >= count or offset(chunk[#chunk]) > last
end
return {lead, lo, starts, msgs, evs}
