-- KEYS: the actor's index; ARGV: its write time, ttl ('' = none), entries older than this go, session id
index_touch(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
