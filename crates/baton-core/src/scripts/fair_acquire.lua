-- fair_acquire(KEYS[1]=lock, KEYS[2]=fence, KEYS[3]=queue, KEYS[4]=entries, KEYS[5]=channels; ARGV[1]=token, ARGV[2]=ttl ms, ARGV[3]=entry ttl ms, ARGV[4]=the token's grant channel, or '' not to queue) -> {1, fence} if the lock is now ours, else {0, ms to wait at most, the fence counter now (a grant with a fence no higher is from a hand-off before this call)}
-- A fair lock is a hash (field 'holder') so that unfair use of its name fails with WRONGTYPE. Waiters queue in arrival order (KEYS[3], a list of tokens), each entry with a short lease of its own (KEYS[4], token -> expiry on this server's clock) and its grant channel (KEYS[5]).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder == ARGV[1] then
  -- Handed to us by the release (fence drawn then), or our own earlier attempt whose reply was lost: the lease starts now.
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2]))}
end
-- Waiters whose entry lapsed (dead, or gone) are skipped.
local head = redis.call('LINDEX', KEYS[3], 0)
while head do
  local expires = redis.call('HGET', KEYS[4], head)
  if expires and tonumber(expires) > now then
    break
  end
  redis.call('LPOP', KEYS[3])
  redis.call('HDEL', KEYS[4], head)
  redis.call('HDEL', KEYS[5], head)
  head = redis.call('LINDEX', KEYS[3], 0)
end
if not holder and (not head or head == ARGV[1]) then
  local fence = redis.pcall('INCR', KEYS[2])
  if type(fence) == 'table' then
    return redis.error_reply('baton: fence key is not a counter: ' .. tostring(fence.err))
  end
  redis.call('HSET', KEYS[1], 'holder', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if head then
    redis.call('LPOP', KEYS[3])
    redis.call('HDEL', KEYS[4], head)
    redis.call('HDEL', KEYS[5], head)
  end
  return {1, fence}
end
if ARGV[4] ~= '' then
  if redis.call('HSET', KEYS[5], ARGV[1], ARGV[4]) == 1 then
    redis.call('RPUSH', KEYS[3], ARGV[1])
  end
  redis.call('HSET', KEYS[4], ARGV[1], now + tonumber(ARGV[3]))
  -- The queue outlives its last live entry by nothing: every refresh moves its expiry to that entry's.
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
  redis.call('PEXPIRE', KEYS[5], ARGV[3])
end
local counter = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if holder then
  return {0, redis.call('PTTL', KEYS[1]), counter}
end
-- Free, but an earlier waiter is first: it takes the lock when it looks next, or its entry lapses.
return {0, tonumber(redis.call('HGET', KEYS[4], head)) - now, counter}
