-- release(KEYS[1]=lock; ARGV[1]=token, ARGV[2]=release channel or '', ARGV[3]='sharded' to announce with SPUBLISH (Redis Cluster; PUBLISH where the server has no SPUBLISH), else absent) -> 1 if the key held our token and is deleted (and, given a channel, the release announced), 2 if deleted but the announcement was refused (an ACL without the channel or PUBLISH/SPUBLISH), else 0 (nothing touched)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] ~= '' then
    -- pcall: the release has happened; a refused PUBLISH must not turn it into an error.
    local announced
    if ARGV[3] == 'sharded' then
      announced = redis.pcall('SPUBLISH', ARGV[2], 'released')
      -- Redis 6 has no sharded pub/sub ("Unknown Redis command", 7's "unknown command"):
      -- a plain message reaches every node, where that cluster's waiters SUBSCRIBE.
      if type(announced) == 'table' and announced.err and string.find(announced.err, 'nknown', 1, true) then
        announced = redis.pcall('PUBLISH', ARGV[2], 'released')
      end
    else
      announced = redis.pcall('PUBLISH', ARGV[2], 'released')
    end
    if type(announced) == 'table' and announced.err then
      return 2
    end
  end
  return 1
end
return 0
