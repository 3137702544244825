-- Offer a sku at a group price: viewers open groups of `group_size` under it.
-- ARGV[1] sku, ARGV[2] group-buy id, ARGV[3] group price cents, ARGV[4] group size,
-- ARGV[5] window s, ARGV[6] cap on units sold through it or '', ARGV[7] stream id
-- Returns {outcome, group-buy JSON or ''}.
require_checked()
if not redis.call('HGET', K_PRODUCTS, ARGV[1]) then
  return {'unknown_sku', ''}
end
local cap = cjson.null
if ARGV[6] ~= '' then
  cap = tonumber(ARGV[6])
end
local gb = {
  id = ARGV[2], stream_id = ARGV[7], sku = ARGV[1], group_price_cents = tonumber(ARGV[3]),
  group_size = tonumber(ARGV[4]), window_s = tonumber(ARGV[5]), stock = cap,
  status = 'active', created_at = now_ms(),
}
local raw = cjson.encode(gb)
redis.call('HSET', K_GBUYS, gb.id, raw)
event('groupbuy.started', raw)
return {'created', raw}
