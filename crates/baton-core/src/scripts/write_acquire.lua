-- write_acquire(KEYS[1]=writer, KEYS[2]=fence, KEYS[3]=readers, KEYS[4]=waiting writers; ARGV[1]=token, ARGV[2]=ttl ms, ARGV[3]=waiting mark ttl ms, or '0' not to wait) -> {1, fence} if the write lease is now ours, else {0, ms to wait at most}
-- The writer holds KEYS[1] as a plain lock holds its key, once no unexpired reader remains; while it waits it marks itself in KEYS[4], which holds new readers back.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local holder = redis.call('GET', KEYS[1])
local wait
if holder and holder ~= ARGV[1] then
  wait = redis.call('PTTL', KEYS[1])
else
  local reader = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if reader[1] then
    wait = tonumber(reader[2]) - now
  end
end
if wait then
  if ARGV[3] ~= '0' then
    redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), ARGV[1])
    local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', KEYS[4], tonumber(last[2]))
  end
  return {0, wait}
end
local fence = redis.pcall('INCR', KEYS[2])
if type(fence) == 'table' then
  return redis.error_reply('baton: fence key is not a counter: ' .. tostring(fence.err))
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[1])
return {1, fence}
