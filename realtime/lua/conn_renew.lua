-- Renew this process's leases on its open sockets of one stream (one call per batch).
-- KEYS[i] a viewer's leases, ARGV[1] lease ms, ARGV[1 + i] the connection id in KEYS[i]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = string.format('%d', now + tonumber(ARGV[1]))
for i, key in ipairs(KEYS) do
  -- Re-added even if it lapsed meanwhile (a stall): the socket is open, so it counts.
  redis.call('ZADD', key, ends, ARGV[i + 1])
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', key, string.format('%d', tonumber(last[2])))
end
return #KEYS
