-- Add a product to a stream, once: a sku that exists already is refused, and so is
-- one more product than the stream may list (checked here, so concurrent adds cannot
-- pass the cap together).
-- KEYS[1] products hash, KEYS[2] stock hash, KEYS[3] events stream, KEYS[4] checked
-- ARGV[1] sku, ARGV[2] product JSON, ARGV[3] stock, ARGV[4] stream id, ARGV[5] most
-- products per stream
-- Returns 1 added, 0 the sku exists, -1 the stream has the most products it may have.
-- The freshness guard of lua/common.lua; a stream with no product and no guard yet is
-- new (StreamStore.create sets the guard, tests and benchmarks may add products first).
local server = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local checked = redis.call('GET', KEYS[4])
if not checked and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[4], server)
elseif checked ~= server then
  return redis.error_reply('STREAM_RECOVERING the stream was not checked against the order '
    .. 'store on this Redis server yet')
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[3], '*', 'type', 'product.added', 'data', ARGV[2])
return 1
