-- Set the stream's referral commission rates; payments from now on carry them.
-- ARGV[1] level1 bps, ARGV[2] level2 bps, ARGV[3] stream id. Returns the rates JSON.
local rates = {stream_id = ARGV[3], level1_bps = tonumber(ARGV[1]),
  level2_bps = tonumber(ARGV[2]), set_at = now_ms()}
redis.call('HSET', K_RATES, 'level1_bps', rates.level1_bps, 'level2_bps', rates.level2_bps)
local raw = cjson.encode(rates)
event('commission.set', raw)
return raw
