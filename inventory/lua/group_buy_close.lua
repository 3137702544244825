-- Close a group buy: no new groups; the open ones run out their window.
-- ARGV[1] group-buy id. Returns {outcome ('closed_now', 'closed', 'not_found'), JSON}.
local raw = redis.call('HGET', K_GBUYS, ARGV[1])
if not raw then
  return {'not_found', ''}
end
local gb = cjson.decode(raw)
if gb.status ~= 'active' then
  return {'closed', raw}
end
gb.status = 'closed'
gb.closed_at = now_ms()
raw = cjson.encode(gb)
redis.call('HSET', K_GBUYS, gb.id, raw)
event('groupbuy.closed', raw)
return {'closed_now', raw}
