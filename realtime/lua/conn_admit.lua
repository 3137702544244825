-- A viewer opens a socket to a stream: admitted while it holds fewer than the cap of
-- unexpired leases, across all processes. Leases are timed by the Redis clock, so the
-- processes' clocks do not matter; a dead process's leases lapse by themselves.
-- KEYS[1] the viewer's leases (connection id -> lease end ms)
-- ARGV[1] connection id, ARGV[2] lease ms, ARGV[3] cap
-- Returns 1 admitted (lease taken), 0 over the cap.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
-- The key outlives its longest lease and no more.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%d', tonumber(last[2])))
return 1
