-- extend(KEYS[1]=lock; ARGV[1]=token, ARGV[2]=ttl ms) -> 1 if the key held our token and now expires in ttl ms, else 0 (never creates a key)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
