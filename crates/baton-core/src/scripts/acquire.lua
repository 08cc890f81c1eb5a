-- acquire(KEYS[1]=lock, KEYS[2]=fence; ARGV[1]=token, ARGV[2]=ttl ms) -> {1, fence} if the lock is now ours, else {0, pttl of the holder's key}
-- A key that already holds our token (an earlier attempt whose reply was lost) counts as ours: its TTL is reset and a new fence drawn.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {0, redis.call('PTTL', KEYS[1])}
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local fence = redis.pcall('INCR', KEYS[2])
if type(fence) == 'table' then
  -- The fence key holds something INCR refuses: take nothing and say why.
  redis.call('DEL', KEYS[1])
  return redis.error_reply('baton: fence key is not a counter: ' .. tostring(fence.err))
end
return {1, fence}
