-- ARGV: now, ttl ('' = none), expires_at, write token, generation ('' = any), idempotency key ('' = none),
--       keys stored before this are forgotten, generation ttl, index ttl ('' = none), index entries older than
--       this go, session id, then role, json for each message.
--       KEYS[9], if given: the actor's index (outside the session's slot: never in Redis Cluster)
-- -> the count, {'changed'} or {'stored', count, messages}
local gen, over = life_over(ARGV[1])
if over then  -- its life of turns expired: the session starts again under a new generation
  drop()
  gen = gen + 1
  redis.call('SET', KEYS[8], gen, 'EX', ARGV[8])
elseif expired(ARGV[1]) then drop() end
if redis.call('HGET', KEYS[1], 'last_write') == ARGV[4] then
  -- the same write retried after a lost reply: it is already stored
  return tonumber(redis.call('HGET', KEYS[1], 'user_messages'))
end
if ARGV[5] ~= '' and gen ~= tonumber(ARGV[5]) then return {'changed'} end
if ARGV[6] ~= '' then
  local old = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', '(' .. ARGV[7], 'LIMIT', 0, {{PRUNE_PER_WRITE}})
  if #old > 0 then
    redis.call('ZREM', KEYS[7], unpack(old))
    redis.call('HDEL', KEYS[6], unpack(old))
  end
  local rec = record(ARGV[6], ARGV[7])
  if rec then
    return {'stored', rec[1], redis.call('LRANGE', KEYS[2], rec[2], rec[2] + rec[3] - 1)}
  end
end
local len = redis.call('LLEN', KEYS[2])
local first = len
local turns = redis.call('LLEN', KEYS[3])
redis.call('RPUSH', KEYS[4], len .. ' ' .. ARGV[1])
local users = 0
for i = 12, #ARGV, 2 do
  if ARGV[i] == 'USER' or turns == 0 then
    redis.call('RPUSH', KEYS[3], len)
    turns = turns + 1
  end
  if ARGV[i] == 'USER' then users = users + 1 end
  redis.call('RPUSH', KEYS[2], ARGV[i + 1])
  len = len + 1
end
local count = redis.call('HINCRBY', KEYS[1], 'user_messages', users)
redis.call('HSET', KEYS[1], 'last_write', ARGV[4])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[6], ARGV[1] .. ' ' .. count .. ' ' .. first .. ' ' .. (len - first))
  redis.call('ZADD', KEYS[7], ARGV[1], ARGV[6])
end
refresh(ARGV[1], ARGV[2], ARGV[3])
if ARGV[2] ~= '' then  -- the generation records the life of turns (its end): it outlives the data
  redis.call('SET', KEYS[8], gen .. ' ' .. redis.call('HGET', KEYS[1], 'expires_at'), 'EX', ARGV[8])
elseif redis.call('EXISTS', KEYS[8]) == 1 then
  redis.call('SET', KEYS[8], gen, 'EX', ARGV[8])
end
if KEYS[9] then index_touch(KEYS[9], ARGV[1], ARGV[9], ARGV[10], ARGV[11]) end
return count
