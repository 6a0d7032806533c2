-- ARGV: now -> {events, messages}
if expired(ARGV[1]) then return {{}, {}} end
return {redis.call('LRANGE', KEYS[4], 0, -1), redis.call('LRANGE', KEYS[2], 0, -1)}
