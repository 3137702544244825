-- Fail the stream's open groups whose window ended (or all open ones, when the stream
-- ended). Only an open group fails, so sweepers running at once fail each one once.
-- ARGV[1] most groups this call, ARGV[2] '1': every open group now
-- Returns {JSON list of failed groups, earliest window end still open or ''}.
require_checked()
local now = now_ms()
local upto = now
if ARGV[2] == '1' then
  upto = '+inf'
end
local due = redis.call('ZRANGEBYSCORE', K_GEXPIRY, '-inf', upto, 'LIMIT', 0, tonumber(ARGV[1]))
local failed = {}
for _, gid in ipairs(due) do
  local g = load_group(gid)
  if g and g.status == 'open' then
    failed[#failed + 1] = cjson.decode(fail_group(g, now))
  else
    redis.call('ZREM', K_GEXPIRY, gid)
  end
end
local next_due = redis.call('ZRANGE', K_GEXPIRY, 0, 0, 'WITHSCORES')
local out = '[]'
if #failed > 0 then
  out = cjson.encode(failed)
end
return {out, next_due[2] or ''}
