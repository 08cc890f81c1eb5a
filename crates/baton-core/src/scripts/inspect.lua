-- inspect(KEYS[1]=lock, KEYS[2]=fence) -> {holder value or false, pttl of the lock key, fence counter or false}; touches nothing
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2])}
