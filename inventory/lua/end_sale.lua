-- End a sku's sale, once, whichever process asks first.
-- ARGV[1] sku, ARGV[2] sale id ('' any), ARGV[3] reason, ARGV[4] '1' to end it now
-- (stream ended), else only when its time is up.
-- Returns the ended sale's JSON, or '' when there was nothing to end.
require_checked()
local raw = redis.call('HGET', K_SALES, ARGV[1])
if not raw then
  return ''
end
local sale = cjson.decode(raw)
if ARGV[2] ~= '' and sale.id ~= ARGV[2] then
  return ''
end
local now = now_ms()
if ARGV[4] ~= '1' and now < sale.ends_at then
  return ''
end
return end_sale(sale, ARGV[3], now)
