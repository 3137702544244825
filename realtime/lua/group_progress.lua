-- Coalesced `group.progress` for one group, like `stock`: at most one per interval
-- across all processes, always the group's counts at the moment it goes out.
-- KEYS[1] gate, KEYS[2] dirty flag, KEYS[3] groups hash (group id -> group JSON),
-- KEYS[4] seq counter, KEYS[5] history stream
-- ARGV[1] group id, ARGV[2] channel, ARGV[3] ts, ARGV[4] history size,
-- ARGV[5] interval ms, ARGV[6] 'change' or 'flush'
-- Returns 0 when published, -1 when nothing was pending, else ms until the caller retries.
if ARGV[6] == 'flush' and redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
local wait = redis.call('PTTL', KEYS[1])
if wait > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', 60000)
  return wait
end
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then
  return -1
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[5])
redis.call('DEL', KEYS[2])
local g = cjson.decode(raw)
local data = cjson.encode({
  group_id = g.id, group_buy_id = g.group_buy_id, sku = g.sku, members = g.members,
  paid = g.paid, needed = g.needed, status = g.status, expires_at = g.expires_at,
})
broadcast(KEYS[4], KEYS[5], ARGV[2], 'group.progress', ARGV[3], data, ARGV[4])
return 0
