-- Viewer count across processes: each process reports its own count with an expiry
-- (a dead process's share disappears); the total goes into the stats and, when it
-- changed, out as a `viewers` message at most once per interval.
-- KEYS[1] seq, KEYS[2] history, KEYS[3] per-process counts, KEYS[4] gate, KEYS[5] stats
-- ARGV[1] channel, ARGV[2] now ms, ARGV[3] history size, ARGV[4] process id,
-- ARGV[5] this process's count, ARGV[6] expiry ms, ARGV[7] interval ms
-- Returns the total.
local now = tonumber(ARGV[2])
if tonumber(ARGV[5]) > 0 then
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5] .. ':' .. (now + tonumber(ARGV[6])))
else
  redis.call('HDEL', KEYS[3], ARGV[4])
end
local total = 0
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local count, expires = string.match(all[i + 1], '^(%d+):(%d+)$')
  if count == nil or tonumber(expires) < now then
    redis.call('HDEL', KEYS[3], all[i])
  else
    total = total + tonumber(count)
  end
end
redis.call('HSET', KEYS[5], 'viewers', total)
local peak = tonumber(redis.call('HGET', KEYS[5], 'peak_viewers') or '0')
if total > peak then
  redis.call('HSET', KEYS[5], 'peak_viewers', total)
end
if redis.call('HGET', KEYS[5], 'viewers_sent') == tostring(total) then
  return total
end
if redis.call('PTTL', KEYS[4]) > 0 then
  return total
end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[7])
redis.call('HSET', KEYS[5], 'viewers_sent', total)
broadcast(KEYS[1], KEYS[2], ARGV[1], 'viewers', ARGV[2], '{"count":' .. total .. '}', ARGV[3])
return total
