-- A viewer's referral code in this stream: made once, the same code ever after.
-- KEYS[N_KEYS + 1] codes hash ("c:CODE" -> owner, "v:VIEWER" -> code)
-- ARGV[1] viewer, ARGV[2] a fresh code. Returns {outcome ('created', 'existing',
-- 'taken': that fresh code is someone's already, try another), code}.
local K_CODES = KEYS[N_KEYS + 1]
local mine = redis.call('HGET', K_CODES, 'v:' .. ARGV[1])
if mine then
  return {'existing', mine}
end
if redis.call('HSETNX', K_CODES, 'c:' .. ARGV[2], ARGV[1]) == 0 then
  return {'taken', ''}
end
redis.call('HSET', K_CODES, 'v:' .. ARGV[1], ARGV[2])
return {'created', ARGV[2]}
