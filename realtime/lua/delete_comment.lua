-- The host deletes a comment: `comment.deleted` goes out once; deleting it again answers
-- the seq of that first message and broadcasts nothing.
-- KEYS[1] seq, KEYS[2] history, KEYS[3] comment ids, KEYS[4] deleted comments
-- ARGV[1] channel, ARGV[2] ts, ARGV[3] history size, ARGV[4] comment id, ARGV[5] data JSON
-- Returns that seq, or -1 when the stream has no record of the comment.
if not redis.call('ZSCORE', KEYS[3], ARGV[4]) then
  return -1
end
local done = redis.call('HGET', KEYS[4], ARGV[4])
if done then
  return tonumber(done)
end
local seq = broadcast(KEYS[1], KEYS[2], ARGV[1], 'comment.deleted', ARGV[2], ARGV[5], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[4], seq)
return seq
