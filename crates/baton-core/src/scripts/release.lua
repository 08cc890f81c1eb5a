-- release(KEYS[1]=lock; ARGV[1]=token, ARGV[2]=release channel or '') -> 1 if the key held our token and is deleted (and, given a channel, the release announced), else 0 (nothing touched)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] ~= '' then
    redis.call('PUBLISH', ARGV[2], 'released')
  end
  return 1
end
return 0
