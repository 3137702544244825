-- Expire the stream's overdue reservations. Only a `reserved` one is expired, so
-- sweepers running at the same time give each one's stock back exactly once.
-- ARGV[1] most reservations to expire in this call
-- Returns {JSON list of skus whose stock changed, earliest expiry left or '',
-- JSON list of groups a member dropped out of}.
require_checked()
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local skus, seen = {}, {}
for _, id in ipairs(due) do
  local raw = redis.call('HGET', K_RES, id)
  redis.call('ZREM', K_EXPIRY, id)
  if raw then
    local r = cjson.decode(raw)
    if r.status == 'reserved' then
      expire_reservation(r, now)
      if not seen[r.sku] then
        seen[r.sku] = true
        skus[#skus + 1] = r.sku
      end
    end
  end
end
local next_due = redis.call('ZRANGE', K_EXPIRY, 0, 0, 'WITHSCORES')
local skus_json = '[]'
if #skus > 0 then
  skus_json = cjson.encode(skus)
end
return {skus_json, next_due[2] or '', changed_json()}
