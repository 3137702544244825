-- Cancel: a reserved reservation of this viewer gives its stock back at once, once.
-- ARGV[1] reservation id, ARGV[2] viewer id
-- Returns {outcome, reservation JSON or '', JSON list of groups whose counts changed};
-- 'cancelled_now' means stock came back (a group member's slot reopens).
require_checked()
local r, now = open_reservation(ARGV[1], ARGV[2])
if not r then
  return now  -- not a time here: the answer open_reservation gave
end
give_back(r)
settle(r, now)
r.status = 'cancelled'
r.cancelled_at = now
local raw = cjson.encode(r)
redis.call('HSET', K_RES, r.id, raw)
event('reservation.cancelled', raw)
return {'cancelled_now', raw, changed_json()}
