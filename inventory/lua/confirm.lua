-- Confirm (simulated payment): a reserved, unexpired reservation of this viewer becomes
-- paid, once; confirming again answers the same. An overdue one expires here instead.
-- ARGV[1] reservation id, ARGV[2] viewer id, ARGV[3] order id
-- Returns {outcome, reservation JSON or ''}; outcome 'expired_now' means stock came back.
local r, now = open_reservation(ARGV[1], ARGV[2])
if not r then
  return now  -- not a time here: the answer open_reservation gave
end
r.status = 'paid'
r.order_id = ARGV[3]
r.paid_at = now
local raw = cjson.encode(r)
redis.call('HSET', K_RES, r.id, raw)
redis.call('ZREM', K_EXPIRY, r.id)
event('reservation.confirmed', raw)
return {'paid', raw}
