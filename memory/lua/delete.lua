-- ARGV: now, generation ttl -> events removed (0 when already expired)
local events = redis.call('LLEN', KEYS[4])
if expired(ARGV[1]) then events = 0 end
local gen = generation(ARGV[1])
drop()
redis.call('SET', KEYS[8], gen + 1, 'EX', ARGV[2])
return events
