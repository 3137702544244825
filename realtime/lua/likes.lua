-- Aggregated likes: add this process's taps, and publish the sum at most once per
-- interval for the whole stream (all processes).
-- KEYS[1] seq, KEYS[2] history, KEYS[3] pending likes, KEYS[4] gate, KEYS[5] stats
-- ARGV[1] channel, ARGV[2] ts, ARGV[3] history size, ARGV[4] new taps, ARGV[5] interval ms
-- Returns 0 when published, -1 when nothing is pending, else ms until the caller retries.
local n = tonumber(ARGV[4])
if n > 0 then
  redis.call('INCRBY', KEYS[3], n)
end
local wait = redis.call('PTTL', KEYS[4])
if wait > 0 then
  return wait
end
local pending = tonumber(redis.call('GET', KEYS[3]) or '0')
if pending <= 0 then
  return -1
end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[5])
redis.call('DEL', KEYS[3])
local total = redis.call('HINCRBY', KEYS[5], 'likes', pending)
local data = '{"count":' .. pending .. ',"total":' .. total .. '}'
broadcast(KEYS[1], KEYS[2], ARGV[1], 'likes', ARGV[2], data, ARGV[3])
return 0
