-- Open a group under a group buy, with the viewer as its first member (a held unit at
-- the group price). The same idempotency key again answers with the group it opened.
-- ARGV[1] group-buy id, ARGV[2] viewer, ARGV[3] key, ARGV[4] new group id,
-- ARGV[5] share code, ARGV[6] new reservation id, ARGV[7] reservation ttl ms
-- Returns {outcome, group JSON or '', reservation JSON or '', first}.
require_checked()
local now = now_ms()
local raw_gb = redis.call('HGET', K_GBUYS, ARGV[1])
if not raw_gb then
  return {'unknown_group_buy', '', '', 0}
end
local gb = cjson.decode(raw_gb)
local existing = redis.call('HGET', K_IDEM, ARGV[2] .. '\n' .. ARGV[3])
if existing then
  local raw = redis.call('HGET', K_RES, existing)
  local r = cjson.decode(raw)
  if r.group_buy_id == gb.id and present(r.group_id) then
    return {'existing', redis.call('HGET', K_GROUPS, r.group_id), raw, 0}
  end
  return {'idempotency_conflict', '', raw, 0}
end
if gb.status ~= 'active' then
  return {'group_closed', '', '', 0}
end
local g = {
  id = ARGV[4], group_buy_id = gb.id, stream_id = gb.stream_id, sku = gb.sku,
  share_code = ARGV[5], group_size = gb.group_size, price_cents = gb.group_price_cents,
  opened_at = now, expires_at = now + gb.window_s * 1000, status = 'open',
  members = 0, paid = 0, needed = gb.group_size, roster = {}, opened_by = ARGV[2],
}
local outcome, raw, _, first = add_member(g, gb, ARGV[2], ARGV[3], ARGV[6], tonumber(ARGV[7]), now)
if outcome ~= 'created' then
  return {outcome, '', raw, 0}
end
redis.call('ZADD', K_GEXPIRY, g.expires_at, g.id)
redis.call('HINCRBY', K_GBUYS, gb.id .. ':opened', 1)
group_event('group.opened', g)
return {'created', redis.call('HGET', K_GROUPS, g.id), raw, first}
