-- inspect(KEYS[1]=lock, KEYS[2]=fence) -> {holder value or false, pttl of the lock key, fence counter or false}; touches nothing
-- A fair lock's key is a hash: its holder is the field 'holder'.
local holder
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  holder = redis.call('HGET', KEYS[1], 'holder')
else
  holder = redis.call('GET', KEYS[1])
end
return {holder, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2])}
