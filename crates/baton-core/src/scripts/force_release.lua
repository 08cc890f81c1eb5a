-- force_release(KEYS[1]=lock; ARGV[1]=release channel) -> the value deleted (whoever held it) and the release announced, or false if the key was absent
local holder = redis.call('GET', KEYS[1])
if holder then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[1], 'released')
end
return holder
