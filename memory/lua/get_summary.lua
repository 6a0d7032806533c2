-- ARGV: now -> {text, through} or {}
if expired(ARGV[1]) then return {} end
local s = redis.call('HMGET', KEYS[5], 'text', 'through')
if not s[1] then return {} end
return s
