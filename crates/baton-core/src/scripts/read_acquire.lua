-- read_acquire(KEYS[1]=readers, KEYS[2]=fence, KEYS[3]=writer, KEYS[4]=waiting writers; ARGV[1]=token, ARGV[2]=ttl ms) -> {1, fence of the last write} if a read lease is now ours, else {0, ms to wait at most}
-- Readers share the lock while no writer holds it or waits for it (writer-preferring: a waiting writer holds new readers back, so writers do not starve).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local writer = redis.call('PTTL', KEYS[3])
if writer ~= -2 then
  return {0, writer}
end
local waiting = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if waiting[1] then
  return {0, tonumber(waiting[2]) - now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]))
local fence = redis.call('GET', KEYS[2])
if fence and not tonumber(fence) then
  return redis.error_reply('baton: fence key is not a counter')
end
return {1, tonumber(fence or '0')}
