-- ARGV: now, ttl, expires_at, text, through, generation ('' = any) -> 1 written, 0 refused
if expired(ARGV[1]) then
  drop()  -- its summary must not reach the session that starts next
  return 0
end
if ARGV[6] ~= '' then
  if generation(ARGV[1]) ~= tonumber(ARGV[6]) then return 0 end  -- cleared since
  -- the turns it summarises are gone
  if tonumber(redis.call('HGET', KEYS[1], 'user_messages') or '0') < tonumber(ARGV[5]) then return 0 end
end
redis.call('HSET', KEYS[5], 'text', ARGV[4], 'through', ARGV[5])
refresh(ARGV[1], ARGV[2], ARGV[3])
return 1
