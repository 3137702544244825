-- Trim a stream's events that every consumer group has acknowledged and that are
-- older than the events retention window. Prefixed by ids.lua.
-- KEYS[1] events stream; ARGV[1] retention (ms), ARGV[2] most entries to remove.
-- Returns {entries removed, the MINID used ('' when nothing may go)}.
--
-- The cut is approximate (`MINID ~`): Redis then only frees whole radix-tree nodes whose
-- entries are all older than the cut, which is cheap and, with LIMIT, bounded per call.
-- It may keep a node's worth of entries more than an exact cut would (at most
-- stream-node-max-entries / -bytes, 100 entries or 4 KB by default); it never removes an
-- entry at or after the cut, and that is the only property safety needs. An exact cut
-- would have to rewrite the partly-trimmed node on every pass and cannot take LIMIT.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
-- No group has read anything yet: everything is still needed.
if #groups == 0 then return {0, ''} end
-- Entry ids are Redis clock times, so the window is measured on the Redis clock too.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cut = string.format('%d-0', math.max(0, now - tonumber(ARGV[1])))
for _, flat in ipairs(groups) do
  local g = fields(flat)
  -- Entries after last-delivered-id were never read by this group; of the ones before,
  -- the pending ones (delivered, not acknowledged) start at XPENDING's smallest id.
  local needed = g['last-delivered-id']
  if tonumber(g['pending']) > 0 then
    needed = redis.call('XPENDING', KEYS[1], g['name'])[2]
  end
  if older(needed, cut) then cut = needed end
end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', '~', cut, 'LIMIT', ARGV[2])
return {removed, cut}
