-- extend(KEYS[1]=lock; ARGV[1]=token, ARGV[2]=ttl ms, ARGV[3]='fair' when the lock is a fair lock's hash, else absent) -> 1 if the key held our token and now expires in ttl ms, else 0 (never creates a key)
local holder
if ARGV[3] == 'fair' then
  holder = redis.call('HGET', KEYS[1], 'holder')
else
  holder = redis.call('GET', KEYS[1])
end
if holder == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
