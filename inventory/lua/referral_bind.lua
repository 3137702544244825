-- Bind a viewer to the owner of a referral code, for this stream, first touch for good.
-- Refused (and nothing changes) when the owner is the viewer or was brought, directly or
-- not, by the viewer (a cycle). Bindings form a forest, so the walk up ends.
-- KEYS[N_KEYS + 1] codes hash; ARGV[1] viewer, ARGV[2] code, ARGV[3] stream id
-- Returns {outcome ('bound_now', 'bound': earlier binding kept, 'unknown_referral',
-- 'referral_refused'), referrer or ''}.
local K_CODES = KEYS[N_KEYS + 1]
local viewer = ARGV[1]
local owner = redis.call('HGET', K_CODES, 'c:' .. ARGV[2])
if not owner then
  return {'unknown_referral', ''}
end
if owner == viewer then
  return {'referral_refused', owner}
end
local up = redis.call('HGET', K_REFS, owner)
while up do
  if up == viewer then
    return {'referral_refused', owner}
  end
  up = redis.call('HGET', K_REFS, up)
end
local earlier = redis.call('HGET', K_REFS, viewer)
if earlier then
  return {'bound', earlier}
end
local now = now_ms()
redis.call('HSET', K_REFS, viewer, owner)
event('referral.bound', {stream_id = ARGV[3], viewer_id = viewer, referrer_id = owner,
  code = ARGV[2], bound_at = now})
return {'bound_now', owner}
