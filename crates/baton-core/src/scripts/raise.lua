-- raise(KEYS[2i-1]=a lock, KEYS[2i]=its fence, for the lock or each of a multi-lock's names; ARGV[1]=token, ARGV[2]=fence) -> 1 if every lock holds our token and each counter is now >= fence, else 0 (nothing touched)
local locks = #KEYS / 2
for i = 1, locks do
  if redis.call('GET', KEYS[2 * i - 1]) ~= ARGV[1] then
    return 0
  end
end
for i = 1, locks do
  local current = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if current == nil then
    return redis.error_reply('baton: fence key is not a counter')
  end
  if current < tonumber(ARGV[2]) then
    redis.call('SET', KEYS[2 * i], ARGV[2])
  end
end
return 1
