-- ARGV: now, generation ttl -> events removed (0 when already expired)
local events = redis.call('LLEN', KEYS[4])
if expired(ARGV[1]) then events = 0 end
drop()
redis.call('INCR', KEYS[8])
redis.call('EXPIRE', KEYS[8], ARGV[2])
return events
