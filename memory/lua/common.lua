-- Every session script gets the session's 8 keys: meta msgs turns events summary reqs reqtimes gen.
local function expired(now)
  local due = redis.call('HGET', KEYS[1], 'expires_at')
  return due and tonumber(due) <= tonumber(now)
end
local function drop()  -- everything of the session except its generation
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
end
local function generation()
  return tonumber(redis.call('GET', KEYS[8]) or '0')
end
local function refresh(ttl, expires_at)  -- sliding expiry: every key of the session lives ttl more seconds
  if ttl ~= '' then
    redis.call('HSET', KEYS[1], 'expires_at', expires_at)
    for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
  elseif redis.call('HDEL', KEYS[1], 'expires_at') == 1 then  -- a TTL was set before: the keys persist now
    for i = 1, 7 do redis.call('PERSIST', KEYS[i]) end
  end
end
local function record(key, cutoff)  -- {count, offset, n} of an idempotency key still remembered, or nil
  local rec = redis.call('HGET', KEYS[6], key)
  if not rec then return nil end
  local at, count, offset, n = string.match(rec, '^(%S+) (%d+) (%d+) (%d+)$')
  if not at or tonumber(at) < tonumber(cutoff) then return nil end
  return {count, tonumber(offset), tonumber(n)}
end
