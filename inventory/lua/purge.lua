-- Purge cancelled, expired and refunded reservations older than the retention: the
-- reservation record and its idempotency key go (SQL keeps the order). What went is counted in K_PURGED (rows, and
-- paid units per sku) so that the stock still balances for reconcile. Per-viewer counts
-- stay: paid units count against the per-user limit for the stream's whole life.
-- ARGV[1] retention ms, ARGV[2] most reservations to purge in this call
-- Returns the settled time of the oldest settled reservation left, or ''.
-- Only reservations whose units went back to stock: a paid one stays (a refund or its
-- group still needs it; paid records are bounded by the units the host listed).
local FINAL = {cancelled = true, expired = true, refunded = true}
local cutoff = now_ms() - tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', K_SETTLED, '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', K_SETTLED, id)
  local raw = redis.call('HGET', K_RES, id)
  if raw then
    local r = cjson.decode(raw)
    if not FINAL[r.status] then
      if r.status ~= 'paid' then
        -- Not over yet (a group member waiting for its group): look again later.
        redis.call('ZADD', K_SETTLED, now_ms(), id)
      end
    else
      redis.call('HDEL', K_RES, id)
      local idem_field = r.viewer_id .. '\n' .. r.key
      if redis.call('HGET', K_IDEM, idem_field) == id then
        redis.call('HDEL', K_IDEM, idem_field)
      end
      redis.call('HINCRBY', K_PURGED, 'rows', 1)
      if r.status == 'paid' then
        redis.call('HINCRBY', K_PURGED, 'paid:' .. r.sku, r.qty)
      end
    end
  end
end
local first = redis.call('ZRANGE', K_SETTLED, 0, 0, 'WITHSCORES')
return first[2] or ''
