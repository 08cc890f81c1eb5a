-- release(KEYS[1]=lock; ARGV[1]=token, ARGV[2]=release channel or '', ARGV[3]='sharded' to announce with SPUBLISH (Redis Cluster; PUBLISH where the server has no SPUBLISH), else '' or absent, ARGV[4]='permit' when KEYS[1] is a semaphore's sorted set, 'fair' when it is a fair lock's hash (then KEYS[2], KEYS[3], KEYS[4], KEYS[5]=fence, queue, entries, channels as fair_acquire's, and ARGV[5]=hand-off ttl ms), 'multi' when KEYS are a multi-lock's locks (then ARGV[2] only says whether to announce, on ARGV[4+i], KEYS[i]'s channel), else absent) -> 1 if our token held the lock (or an unexpired permit) and is removed or handed on (and, given a channel, the release announced), 2 if so but the announcement was refused (an ACL without the channel or PUBLISH/SPUBLISH), else 0 (nothing of ours held; a fair lock's waiter then takes its queue entry out; a multi-lock not held whole, whose locks still ours are released and announced all the same)
local held
-- Multi-lock: the channels of the locks released (one channel, ARGV[2], otherwise).
local released
-- What the announcement says: a plain release, or a hand-off's fence (for its one waiter).
local message = 'released'
if ARGV[4] == 'permit' then
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
  held = expires and tonumber(expires) > now
  if expires then
    redis.call('ZREM', KEYS[1], ARGV[1])
  end
elseif ARGV[4] == 'fair' then
  if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
    held = true
    -- Hand the lock to the first live waiter, fence drawn now, and tell only that waiter (on its own channel, even for a take-back: it must learn it holds the lock).
    local clock = redis.call('TIME')
    local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
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
    if head then
      local fence = redis.pcall('INCR', KEYS[2])
      if type(fence) == 'table' then
        return redis.error_reply('baton: fence key is not a counter: ' .. tostring(fence.err))
      end
      -- A short lease until the waiter takes it (its next acquire call), so a waiter that died holds nothing for long.
      redis.call('HSET', KEYS[1], 'holder', head)
      redis.call('PEXPIRE', KEYS[1], ARGV[5])
      ARGV[2] = redis.call('HGET', KEYS[5], head) or ''
      message = tostring(fence)
      redis.call('LPOP', KEYS[3])
      redis.call('HDEL', KEYS[4], head)
      redis.call('HDEL', KEYS[5], head)
    else
      redis.call('DEL', KEYS[1])
    end
  else
    -- Not the holder: a waiter leaving the queue (its wait is over) takes its entry out.
    redis.call('LREM', KEYS[3], 0, ARGV[1])
    redis.call('HDEL', KEYS[4], ARGV[1])
    redis.call('HDEL', KEYS[5], ARGV[1])
  end
elseif ARGV[4] == 'multi' then
  held = true
  released = {}
  for i = 1, #KEYS do
    if redis.call('GET', KEYS[i]) == ARGV[1] then
      redis.call('DEL', KEYS[i])
      released[#released + 1] = ARGV[4 + i]
    else
      held = false
    end
  end
elseif redis.call('GET', KEYS[1]) == ARGV[1] then
  held = true
  redis.call('DEL', KEYS[1])
end
if not released then
  if not held then
    return 0
  end
  released = {ARGV[2]}
end
local refused = false
if ARGV[2] ~= '' then
  for _, channel in ipairs(released) do
    -- pcall: the release has happened; a refused PUBLISH must not turn it into an error.
    local announced
    if ARGV[3] == 'sharded' then
      announced = redis.pcall('SPUBLISH', channel, message)
      -- Redis 6 has no sharded pub/sub ("Unknown Redis command", 7's "unknown command"):
      -- a plain message reaches every node, where that cluster's waiters SUBSCRIBE.
      if type(announced) == 'table' and announced.err and string.find(announced.err, 'nknown', 1, true) then
        announced = redis.pcall('PUBLISH', channel, message)
      end
    else
      announced = redis.pcall('PUBLISH', channel, message)
    end
    if type(announced) == 'table' and announced.err then
      refused = true
    end
  end
end
if not held then
  return 0
end
if refused then
  return 2
end
return 1
