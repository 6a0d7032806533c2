-- KEYS: meta msgs turns; ARGV: now -> {} (gone, expired, no turns) or {count, first messages of the first 2 turns}
local due = redis.call('HGET', KEYS[1], 'expires_at')
if due and tonumber(due) <= tonumber(ARGV[1]) then return {} end
if redis.call('LLEN', KEYS[2]) == 0 then return {} end
local heads = {}
for _, offset in ipairs(redis.call('LRANGE', KEYS[3], 0, 1)) do
  heads[#heads + 1] = redis.call('LINDEX', KEYS[2], offset)
end
return {redis.call('HGET', KEYS[1], 'user_messages') or '0', heads}
