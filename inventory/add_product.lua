-- Add a product to a stream, once: a sku that exists already is refused.
-- KEYS[1] products hash, KEYS[2] stock hash, KEYS[3] events stream
-- ARGV[1] sku, ARGV[2] product JSON, ARGV[3] stock, ARGV[4] stream id
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[3], '*', 'type', 'product.added', 'data', ARGV[2])
return 1
