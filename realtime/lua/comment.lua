-- A viewer's comment: refused when muted, over the rate limit or containing a banned
-- word; else counted and broadcast, atomically, so every process applies the same rules.
-- Its id is recorded (as many as the history keeps) so that the host can delete it.
-- KEYS[1] seq, KEYS[2] history, KEYS[3] mutes, KEYS[4] banned words, KEYS[5] rate counter,
-- KEYS[6] stats, KEYS[7] comment ids, KEYS[8] deleted comments
-- ARGV[1] channel, ARGV[2] ts, ARGV[3] history size, ARGV[4] viewer id,
-- ARGV[5] normalized text (realtime/textnorm.py), ARGV[6] data JSON, ARGV[7] comments per window, ARGV[8] window ms,
-- ARGV[9] comment id
-- Returns the seq, or -1 muted, -2 rate limited, -3 banned word.
if redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 1 then
  return -1
end
local n = redis.call('INCR', KEYS[5])
if n == 1 then
  redis.call('PEXPIRE', KEYS[5], ARGV[8])
end
if n > tonumber(ARGV[7]) then
  return -2
end
for _, word in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if string.find(ARGV[5], word, 1, true) then
    return -3
  end
end
redis.call('HINCRBY', KEYS[6], 'comments', 1)
local seq = broadcast(KEYS[1], KEYS[2], ARGV[1], 'comment', ARGV[2], ARGV[6], ARGV[3])
redis.call('ZADD', KEYS[7], seq, ARGV[9])
local extra = redis.call('ZCARD', KEYS[7]) - tonumber(ARGV[3])
if extra > 0 then
  -- Usually one id: the oldest comment falls out of the record, and so does its deletion.
  local old = redis.call('ZRANGE', KEYS[7], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[7], 0, extra - 1)
  redis.call('HDEL', KEYS[8], unpack(old))
end
return seq
