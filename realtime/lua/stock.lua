-- Coalesced `stock` message for one sku: at most one per interval across all processes,
-- and always the value in Redis at the moment it goes out, so the last one is the newest.
-- KEYS[1] gate (exists while an interval runs), KEYS[2] dirty flag, KEYS[3] stock hash,
-- KEYS[4] seq counter, KEYS[5] history stream
-- ARGV[1] sku, ARGV[2] channel, ARGV[3] ts, ARGV[4] history size, ARGV[5] interval ms,
-- ARGV[6] 'change' (stock just changed) or 'flush' (a retry after an interval)
-- Returns 0 when published, -1 when nothing was pending, else ms until the caller retries.
if ARGV[6] == 'flush' and redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
local wait = redis.call('PTTL', KEYS[1])
if wait > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', 60000)
  return wait
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[5])
redis.call('DEL', KEYS[2])
local left = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local data = cjson.encode({sku = ARGV[1], left = left})
broadcast(KEYS[4], KEYS[5], ARGV[2], 'stock', ARGV[3], data, ARGV[4])
return 0
