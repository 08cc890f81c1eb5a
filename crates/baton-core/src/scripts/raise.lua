-- raise(KEYS[1]=lock, KEYS[2]=fence; ARGV[1]=token, ARGV[2]=fence) -> 1 if the lock holds our token and the counter is now >= fence, else 0 (nothing touched)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current == nil then
  return redis.error_reply('baton: fence key is not a counter')
end
if current < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
