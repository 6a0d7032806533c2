-- The actor's index: each session id scored by its last write. With a TTL, entries older than the
-- generations' retention go, and the index itself expires when none of the actor's sessions was written
-- for that long.
local function index_touch(index, score, ttl, cutoff, member)
  redis.call('ZADD', index, 'GT', score, member)
  if ttl ~= '' then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. cutoff)
    redis.call('EXPIRE', index, ttl)
  else
    redis.call('PERSIST', index)
  end
end
