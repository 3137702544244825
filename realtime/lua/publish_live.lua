-- publish.lua, only while the stream's record says it is live: a host message costs
-- one round trip, not a read of the record and then the broadcast.
-- KEYS[1] seq counter, KEYS[2] history stream, KEYS[3] the stream's record (hash: id,
-- status, ...); ARGV as publish.lua. Returns the new seq, or 0 (seqs start at 1) when
-- the record is missing, a leftover without its id, or not `live`.
local meta = redis.call('HMGET', KEYS[3], 'id', 'status')
if not meta[1] or meta[2] ~= 'live' then
  return 0
end
return broadcast(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
