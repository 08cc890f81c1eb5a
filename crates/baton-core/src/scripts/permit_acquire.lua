-- permit_acquire(KEYS[1]=permits, KEYS[2]=fence; ARGV[1]=token, ARGV[2]=ttl ms, ARGV[3]=permits) -> {1, fence} if a permit is now ours, else {0, ms until the soonest permit expires}
-- KEYS[1] is a sorted set of tokens scored by their lease's expiry on this server's clock; a token already in it (an earlier attempt whose reply was lost) counts as ours.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(soonest[2]) - now}
end
local fence = redis.pcall('INCR', KEYS[2])
if type(fence) == 'table' then
  -- The fence key holds something INCR refuses: take nothing and say why.
  return redis.error_reply('baton: fence key is not a counter: ' .. tostring(fence.err))
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
-- The set expires with its last permit, so holders that all died leave nothing behind.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]))
return {1, fence}
