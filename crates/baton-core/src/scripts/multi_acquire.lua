-- multi_acquire(KEYS[2i-1]=name i's lock, KEYS[2i]=its fence, for every name; ARGV[1]=token, ARGV[2]=ttl ms) -> {1, fence} if every lock is now ours (fence: above every earlier fence of each name, each counter raised to it), else {0, pttl of a holder's key} (nothing taken)
-- All or none: every lock is looked at before any is set. A lock that already holds our token (an earlier attempt whose reply was lost) counts as ours.
local names = #KEYS / 2
for i = 1, names do
  local holder = redis.call('GET', KEYS[2 * i - 1])
  if holder and holder ~= ARGV[1] then
    return {0, redis.call('PTTL', KEYS[2 * i - 1])}
  end
end
-- One fence for the lot: the highest of the names' next fences, so it exceeds every earlier fence of each.
local fences = {}
local fence = 0
for i = 1, names do
  local next_fence = redis.pcall('INCR', KEYS[2 * i])
  if type(next_fence) == 'table' then
    -- Nothing is taken yet; the counters drawn stay drawn (fences only ever grow).
    return redis.error_reply('baton: fence key is not a counter: ' .. tostring(next_fence.err))
  end
  fences[i] = next_fence
  if next_fence > fence then
    fence = next_fence
  end
end
for i = 1, names do
  if fences[i] < fence then
    -- Raised, so each name's later fences exceed this lease's.
    redis.call('SET', KEYS[2 * i], fence)
  end
  redis.call('SET', KEYS[2 * i - 1], ARGV[1], 'PX', ARGV[2])
end
return {1, fence}
