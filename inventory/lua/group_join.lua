-- Join an open group: a held unit at the group price, if the group has a free slot, the
-- window runs, the viewer is not a member yet, and stock and limits allow.
-- ARGV[1] group id, ARGV[2] viewer, ARGV[3] key, ARGV[4] new reservation id,
-- ARGV[5] reservation ttl ms
-- Returns {outcome, group JSON or '', reservation JSON or '', first, failed group or ''}.
require_checked()
local now = now_ms()
local g = load_group(ARGV[1])
if not g then
  return {'not_found', '', '', 0, ''}
end
local gb = cjson.decode(redis.call('HGET', K_GBUYS, g.group_buy_id))
local outcome, raw, failed, first = add_member(
  g, gb, ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), now
)
return {outcome, redis.call('HGET', K_GROUPS, g.id), raw, first, failed}
