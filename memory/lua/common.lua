-- Every session script gets the session's 8 keys: meta msgs turns events summary reqs reqtimes gen.
-- gen holds "<generation>", or "<generation> <expires_at>" while the session has a life of turns under a
-- TTL: it outlives the session's data, so a life found expired, or whose keys are gone (reclaimed,
-- evicted), moves the generation on (memory/expiry.py).
local function expired(now)
  local due = redis.call('HGET', KEYS[1], 'expires_at')
  return due and tonumber(due) <= tonumber(now)
end
local function drop()  -- everything of the session except its generation
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
end
local function gen_state()  -- the stored generation; the end of its life of turns (nil: none recorded)
  local v = redis.call('GET', KEYS[8])
  if not v then return 0, nil end
  local g, due = string.match(v, '^(%d+) (%S+)$')
  if g then return tonumber(g), due end
  return tonumber(v) or 0, nil
end
local function life_over(now)  -- the stored generation; whether its life of turns is over (expired, or gone)
  local g, due = gen_state()
  return g, due ~= nil and (tonumber(due) <= tonumber(now) or redis.call('EXISTS', KEYS[1]) == 0)
end
local function generation(now)  -- what a writer must hold: one past the stored one once its life is over
  local g, over = life_over(now)
  if over then return g + 1 end
  return g
end
local function refresh(now, ttl, expires_at)  -- every key of the session lives until expires_at, never less
  if ttl ~= '' then
    local current = redis.call('HGET', KEYS[1], 'expires_at')
    if current and tonumber(current) > tonumber(expires_at) then  -- a turn in progress holds it longer
      expires_at = current
      ttl = math.ceil(tonumber(current) - tonumber(now))
    end
    redis.call('HSET', KEYS[1], 'expires_at', expires_at)
    for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
    local g, due = gen_state()
    if due then redis.call('SET', KEYS[8], g .. ' ' .. expires_at, 'KEEPTTL') end  -- the life's end follows
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
