-- Confirm (simulated payment): a reserved, unexpired reservation of this viewer becomes
-- paid, once; confirming again answers the same. An overdue one expires here instead.
-- A group member's payment makes its order `group_pending`; the payment that completes
-- the group makes every member's order `paid` at once (groups_common.lua). A payment
-- after the group's window ended fails the group here.
-- The order keeps who referred the buyer and the rates in force now (`referral`).
-- ARGV[1] reservation id, ARGV[2] viewer id, ARGV[3] order id
-- Returns {outcome, reservation JSON or '', group JSON or ''}; outcome 'expired_now'
-- means stock came back, 'group_closed' that the group failed (third value) or was over.
require_checked()
local r, now = open_reservation(ARGV[1], ARGV[2])
if not r then
  return now  -- not a time here: the answer open_reservation gave
end
-- The payment itself: the order's status, id, time and referral, stored; no more expiry.
local function pay(status)
  r.status = status
  r.order_id = ARGV[3]
  r.paid_at = now
  r.referral = referral_snapshot(r.viewer_id)
  local raw = cjson.encode(r)
  redis.call('HSET', K_RES, r.id, raw)
  redis.call('ZREM', K_EXPIRY, r.id)
  return raw
end
if present(r.group_id) then
  local g = load_group(r.group_id)
  if not g or g.status ~= 'open' then
    return {'group_closed', cjson.encode(r), ''}
  end
  if now >= g.expires_at then
    local failed = fail_group(g, now)
    return {'group_closed', redis.call('HGET', K_RES, r.id), failed}
  end
  local raw = pay('group_pending')
  event('reservation.group_pending', raw)
  g.roster[r.viewer_id].paid = 1
  g.paid = g.paid + 1
  if g.paid >= g.group_size then
    local formed = form_group(g, now)
    return {'paid', redis.call('HGET', K_RES, r.id), formed}
  end
  return {'group_pending', raw, save_group(g)}
end
local raw = pay('paid')
settle(r, now)
event('reservation.confirmed', raw)
return {'paid', raw, ''}
