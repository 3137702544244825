-- Reserve: idempotency key, rate limit, sku, sale window, per-viewer limit and stock are
-- checked and the reservation recorded with its expiry and event, in one atomic step.
-- KEYS[10] the viewer's rate-limit counter in this stream
-- ARGV[1] viewer id, ARGV[2] sku, ARGV[3] qty, ARGV[4] idempotency key, ARGV[5] new id,
-- ARGV[6] ttl ms, ARGV[7] sale id the viewer asks for or '', ARGV[8] buys per window
-- (0: no limit), ARGV[9] window ms, ARGV[10] stream id
-- Returns {outcome, reservation JSON or '', ended sale JSON or '', first}: first is 1 when
-- the new reservation is the stream's earliest to expire (the caller then registers the
-- stream with the sweepers; otherwise it is registered already with an earlier time).
local viewer, sku, key = ARGV[1], ARGV[2], ARGV[4]
local qty = tonumber(ARGV[3])
if not qty or qty < 1 or qty % 1 ~= 0 then
  return {'invalid_qty', '', '', 0}
end
local idem_field = viewer .. '\n' .. key
local existing = redis.call('HGET', K_IDEM, idem_field)
if existing then
  local raw = redis.call('HGET', K_RES, existing)
  local r = cjson.decode(raw)
  if r.sku ~= sku or r.qty ~= qty then
    return {'idempotency_conflict', raw, '', 0}
  end
  return {'existing', raw, '', 0}
end
local rate = tonumber(ARGV[8])
if rate > 0 then
  local n = redis.call('INCR', KEYS[10])
  if n == 1 then
    redis.call('PEXPIRE', KEYS[10], ARGV[9])
  end
  if n > rate then
    return {'rate_limited', '', '', 0}
  end
end
local raw_product = redis.call('HGET', K_PRODUCTS, sku)
if not raw_product then
  return {'unknown_sku', '', '', 0}
end
local now = now_ms()
local sale, ended = active_sale(sku, now)
ended = ended or ''
if ARGV[7] ~= '' and (sale == nil or sale.id ~= ARGV[7]) then
  return {'sale_not_active', '', ended, 0}
end
local limit, price, sale_id
if sale then
  limit, price, sale_id = sale.per_user_limit, sale.price_cents, sale.id
else
  local product = cjson.decode(raw_product)
  limit, price, sale_id = product.per_user_limit, product.price_cents, cjson.null
end
local field = count_field(viewer, sku, sale_id)
local held = tonumber(redis.call('HGET', K_COUNTS, field) or '0')
if present(limit) and held + qty > limit then
  return {'limit_exceeded', '', ended, 0}
end
local left = stock_left(sku)
if left < qty then
  return {'sold_out', '', ended, 0}
end
redis.call('HSET', K_STOCK, sku, left - qty)
redis.call('HINCRBY', K_COUNTS, field, qty)
local r = {
  id = ARGV[5], stream_id = ARGV[10], viewer_id = viewer, sku = sku, qty = qty,
  price_cents = price, sale_id = sale_id, key = key, created_at = now,
  expires_at = now + tonumber(ARGV[6]), status = 'reserved',
}
local raw = cjson.encode(r)
redis.call('HSET', K_RES, r.id, raw)
redis.call('HSET', K_IDEM, idem_field, r.id)
redis.call('ZADD', K_EXPIRY, r.expires_at, r.id)
local first = 0
if redis.call('ZRANGE', K_EXPIRY, 0, 0)[1] == r.id then
  first = 1
end
event('reservation.created', raw)
if sale and left - qty == 0 then
  ended = end_sale(sale, 'sold_out', now)
end
return {'created', raw, ended, first}
