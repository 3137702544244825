-- Start a flash sale of a sku: up to `cap` of its units left are sold at the sale price;
-- the rest is held aside until the sale ends (time up, sold out or stream ended).
-- ARGV[1] sku, ARGV[2] sale id, ARGV[3] price cents, ARGV[4] cap, ARGV[5] per-viewer
-- limit or '', ARGV[6] duration ms, ARGV[7] stream id
-- Returns {outcome, sale JSON or '', ended sale JSON or ''}.
require_checked()
local sku = ARGV[1]
if not redis.call('HGET', K_PRODUCTS, sku) then
  return {'unknown_sku', '', ''}
end
local now = now_ms()
local running, ended = active_sale(sku, now)
ended = ended or ''
if running then
  return {'sale_active', cjson.encode(running), ended}
end
local left = stock_left(sku)
local units = math.min(tonumber(ARGV[4]), left)
if units < 1 then
  return {'sold_out', '', ended}
end
local limit = cjson.null
if ARGV[5] ~= '' then
  limit = tonumber(ARGV[5])
end
local sale = {
  id = ARGV[2], stream_id = ARGV[7], sku = sku, price_cents = tonumber(ARGV[3]),
  stock = units, per_user_limit = limit, starts_at = now,
  ends_at = now + tonumber(ARGV[6]),
}
local raw = cjson.encode(sale)
redis.call('HSET', K_SALES, sku, raw)
redis.call('HSET', K_HELD, sku, left - units)
redis.call('HSET', K_STOCK, sku, units)
event('sale.started', sale)
return {'started', raw, ended}
