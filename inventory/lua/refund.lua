-- Refund a paid order (the host's decision, or nothing to do if refunded already). Its
-- unit returns to stock once. A paying member of a group still open drops out of it (the
-- slot reopens).
-- ARGV[1] reservation id
-- Returns {outcome ('refunded_now', 'refunded', 'not_paid', 'not_found'), JSON or '',
-- JSON list of groups whose counts changed}.
require_checked()
local raw = redis.call('HGET', K_RES, ARGV[1])
if not raw then
  return {'not_found', '', '[]'}
end
local r = cjson.decode(raw)
if r.status == 'refunded' then
  return {'refunded', raw, '[]'}
end
if r.status ~= 'paid' and r.status ~= 'group_pending' then
  return {'not_paid', raw, '[]'}
end
local from = r.status
give_back(r)
r.status = 'refunded'
r.refunded_at = now_ms()
settle(r, r.refunded_at)  -- purged from Redis after LIVE_SETTLED_RETENTION_S
r.refunded_from = from
raw = cjson.encode(r)
redis.call('HSET', K_RES, r.id, raw)
event('reservation.refunded', raw)
return {'refunded_now', raw, changed_json()}
