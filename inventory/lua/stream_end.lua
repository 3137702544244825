-- End a stream once, atomically with its event and its `stream.ended` broadcast: once
-- the end is in Redis, so is the message in the history (for `resume`) and on the
-- channel (every process's hub), whatever happens to the process that asked.
-- Prefixed by realtime's lua/broadcast.lua (not common.lua: no freshness guard, the
-- end touches no stock).
-- KEYS[1] meta, KEYS[2] events, KEYS[3] broadcast seq, KEYS[4] broadcast history;
-- ARGV[1] ended_at, ARGV[2] data of the `stream.ended` event, ARGV[3] channel,
-- ARGV[4] data of the `stream.ended` broadcast, ARGV[5] history size. A stream whose
-- meta is gone (retired meanwhile) is left alone rather than given a partial record.
-- Returns 1 when this call ended the stream, 0 otherwise.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'ended_at', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'ended')
redis.call('XADD', KEYS[2], '*', 'type', 'stream.ended', 'data', ARGV[2])
broadcast(KEYS[3], KEYS[4], ARGV[3], 'stream.ended', ARGV[1], ARGV[4], ARGV[5])
return 1
