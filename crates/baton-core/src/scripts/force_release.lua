-- force_release(KEYS[1]=lock; ARGV[1]=release channel, ARGV[2]='sharded' to announce with SPUBLISH (Redis Cluster; PUBLISH where the server has no SPUBLISH), else absent) -> {the value deleted (whoever held it) or false if the key was absent, 1 if the release was announced else 0}
-- A fair lock's key is a hash: its holder is the field 'holder' (its waiters, still queued, take it in turn).
local holder
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  holder = redis.call('HGET', KEYS[1], 'holder')
else
  holder = redis.call('GET', KEYS[1])
end
local announced = 0
if holder then
  redis.call('DEL', KEYS[1])
  -- pcall: the lock is broken; a refused PUBLISH (ACL) must not turn that into an error.
  local published
  if ARGV[2] == 'sharded' then
    published = redis.pcall('SPUBLISH', ARGV[1], 'released')
    -- Redis 6 has no sharded pub/sub: announce as the release script does.
    if type(published) == 'table' and published.err and string.find(published.err, 'nknown', 1, true) then
      published = redis.pcall('PUBLISH', ARGV[1], 'released')
    end
  else
    published = redis.pcall('PUBLISH', ARGV[1], 'released')
  end
  if not (type(published) == 'table' and published.err) then
    announced = 1
  end
end
return {holder, announced}
