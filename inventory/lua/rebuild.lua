-- Rebuild a stream's stock from the order store (SQL) merged with what Redis still
-- holds, then mark the stream checked on this Redis server (the freshness guard).
-- Run when Redis may be behind SQL (restart, failover, restored snapshot) or on demand
-- (`live reconcile --repair`). Everything in one atomic step.
-- ARGV[1] JSON {"rows": [...], "products": [...]}: the SQL order rows Redis lacks or
-- holds with another status, and the SQL products Redis lacks (orders/recovery.py);
-- ARGV[2] '1' to rebuild even when the stream is checked already.
-- Merge, per reservation: a row Redis lacks is restored as SQL has it; a terminal SQL
-- status replaces `reserved` in Redis; `paid` (money taken) beats any other status.
-- Then every derived value is recomputed from the merged reservations: per sku
-- `stock + held = product stock - units reserved or paid`, the per-viewer counts, the
-- expiry set. Returns the JSON report of what changed.
if redis.call('EXISTS', K_EVENTS) == 0 then
  return cjson.encode({gone = true}) -- retired (or never created): nothing to rebuild
end
local server = server_id()
if ARGV[2] ~= '1' and redis.call('GET', K_CHECKED) == server then
  return cjson.encode({fresh = true})
end
local sql = cjson.decode(ARGV[1])
local report = {
  products = {}, restored = {}, settled = {}, kept_paid = {}, stock = {}, oversold = {},
}

for _, p in ipairs(sql.products) do
  if redis.call('HSETNX', K_PRODUCTS, p.sku, cjson.encode(p)) == 1 then
    report.products[#report.products + 1] = p.sku
  end
end

local TIMES = {'order_id', 'paid_at', 'cancelled_at', 'expired_at'}
for _, s in ipairs(sql.rows) do
  local raw = redis.call('HGET', K_RES, s.id)
  if not raw then
    redis.call('HSET', K_RES, s.id, cjson.encode(s))
    if present(s.key) then
      redis.call('HSETNX', K_IDEM, s.viewer_id .. '\n' .. s.key, s.id)
    end
    report.restored[#report.restored + 1] = {s.id, s.status}
  else
    local r = cjson.decode(raw)
    if s.status ~= 'reserved' and r.status ~= s.status then
      if r.status == 'reserved' or s.status == 'paid' then
        report.settled[#report.settled + 1] = {s.id, r.status, s.status}
        r.status = s.status
        for _, f in ipairs(TIMES) do
          r[f] = s[f]
        end
        redis.call('HSET', K_RES, r.id, cjson.encode(r))
      else
        -- Paid in Redis, settled otherwise in SQL: the units stay sold.
        report.kept_paid[#report.kept_paid + 1] = {s.id, s.status}
      end
    end
  end
end

-- Everything derived from the reservations, from scratch.
local taken, sale_taken, counts = {}, {}, {}
local open, next_due = {}, nil
local all = redis.call('HGETALL', K_RES)
for i = 2, #all, 2 do
  local r = cjson.decode(all[i])
  if r.status == 'reserved' or r.status == 'paid' then
    taken[r.sku] = (taken[r.sku] or 0) + r.qty
    if present(r.sale_id) then
      sale_taken[r.sale_id] = (sale_taken[r.sale_id] or 0) + r.qty
    end
    local f = count_field(r.viewer_id, r.sku, r.sale_id)
    counts[f] = (counts[f] or 0) + r.qty
    if r.status == 'reserved' then
      open[#open + 1] = {r.expires_at, r.id}
      if next_due == nil or r.expires_at < next_due then
        next_due = r.expires_at
      end
    end
  end
end
redis.call('DEL', K_COUNTS, K_EXPIRY)
for f, n in pairs(counts) do
  redis.call('HSET', K_COUNTS, f, n)
end
for _, e in ipairs(open) do
  redis.call('ZADD', K_EXPIRY, e[1], e[2])
end

local products = redis.call('HGETALL', K_PRODUCTS)
for i = 1, #products, 2 do
  local sku, p = products[i], cjson.decode(products[i + 1])
  local left = p.stock - (taken[sku] or 0)
  if left < 0 then
    report.oversold[#report.oversold + 1] = {sku, -left}
    left = 0
  end
  local old_stock = stock_left(sku)
  local old_held = tonumber(redis.call('HGET', K_HELD, sku) or '0')
  local new_stock, new_held = left, 0
  local sale_raw = redis.call('HGET', K_SALES, sku)
  if sale_raw then
    local sale = cjson.decode(sale_raw)
    new_stock = math.max(0, math.min(sale.stock - (sale_taken[sale.id] or 0), left))
    new_held = left - new_stock
    redis.call('HSET', K_HELD, sku, new_held)
  else
    redis.call('HDEL', K_HELD, sku)
  end
  redis.call('HSET', K_STOCK, sku, new_stock)
  if old_stock ~= new_stock or old_held ~= new_held then
    report.stock[#report.stock + 1] = {sku, old_stock, old_held, new_stock, new_held}
  end
end

redis.call('SET', K_CHECKED, server)
report.next_due = next_due or cjson.null
return cjson.encode(report)
