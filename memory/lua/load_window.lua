-- ARGV: now, k, hold ('' = no TTL), held until, touch ('1': a turn's read, which holds the session for the turn)
-- -> {generation, count, turn start offsets (newest k), messages from the first of them}
local gen = generation(ARGV[1])
local meta = redis.call('HMGET', KEYS[1], 'expires_at', 'user_messages')
if meta[1] and tonumber(meta[1]) <= tonumber(ARGV[1]) then return {gen, 0, {}, {}} end
local count = tonumber(meta[2] or '0')
if ARGV[5] == '1' and ARGV[3] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then refresh(ARGV[1], ARGV[3], ARGV[4]) end
local k = tonumber(ARGV[2])
if k <= 0 then return {gen, count, {}, {}} end
local starts = redis.call('LRANGE', KEYS[3], -k, -1)
if #starts == 0 then return {gen, count, {}, {}} end
local len = redis.call('LLEN', KEYS[2])
return {gen, count, starts, redis.call('LRANGE', KEYS[2], tonumber(starts[1]) - len, -1)}
