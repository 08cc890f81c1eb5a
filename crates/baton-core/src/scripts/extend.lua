-- extend(KEYS=the lock, or a multi-lock's locks; ARGV[1]=token, ARGV[2]=ttl ms, ARGV[3]='fair' when the lock is a fair lock's hash, else absent) -> 1 if every key held our token and now expires in ttl ms, else 0 (nothing touched; never creates a key)
for i = 1, #KEYS do
  local holder
  if ARGV[3] == 'fair' then
    holder = redis.call('HGET', KEYS[i], 'holder')
  else
    holder = redis.call('GET', KEYS[i])
  end
  if holder ~= ARGV[1] then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 1
