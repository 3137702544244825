-- Retire an ended stream: delete every key it has in Redis once it ended long enough
-- ago, holds no open reservation or dead letter, and every group drained it. One
-- script, so an event appended or delivered meanwhile is seen. Prefixed by ids.lua.
-- KEYS[1] meta, KEYS[2] events, KEYS[3] expiry, KEYS[4] dead letters, KEYS[5..] the
-- stream's other keys; ARGV[1] retire streams that ended at or before this time (ms).
-- Returns {outcome, ended_at or ''}: 'retired' (every key deleted), 'gone' (no meta:
-- retired already), 'live' (not ended), 'recent' (ended after ARGV[1]),
-- 'open_reservations', 'dead_letters', 'undrained'.
local ended_at = redis.call('HGET', KEYS[1], 'ended_at')
if not ended_at then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', ''} end
  return {'live', ''}
end
if tonumber(ended_at) > tonumber(ARGV[1]) then return {'recent', ended_at} end
-- An open reservation still expires (an event) or gets paid: keep everything.
if redis.call('ZCARD', KEYS[3]) > 0 then return {'open_reservations', ended_at} end
-- Dead letters (events SQL refused) wait for an operator: `live reconcile`.
if redis.call('EXISTS', KEYS[4]) == 1 then return {'dead_letters', ended_at} end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local groups = redis.call('XINFO', 'GROUPS', KEYS[2])
  if #groups == 0 and redis.call('XLEN', KEYS[2]) > 0 then
    return {'undrained', ended_at}
  end
  local last = fields(redis.call('XINFO', 'STREAM', KEYS[2]))['last-generated-id']
  for _, flat in ipairs(groups) do
    local g = fields(flat)
    if tonumber(g['pending']) > 0 or older(g['last-delivered-id'], last) then
      return {'undrained', ended_at}
    end
  end
end
for i = 1, #KEYS do redis.call('UNLINK', KEYS[i]) end
return {'retired', ended_at}
