-- ARGV: now, key, keys stored before this are forgotten -> {count, messages} or {}
if expired(ARGV[1]) then return {} end
local rec = record(ARGV[2], ARGV[3])
if not rec then return {} end
return {rec[1], redis.call('LRANGE', KEYS[2], rec[2], rec[2] + rec[3] - 1)}
