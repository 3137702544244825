-- Shared by the realtime scripts: give a broadcast message the stream's next seq, keep
-- it in the history and publish it, in the same atomic step as the caller's own work,
-- so every subscriber sees seq order whatever process published. Sharded pub/sub: on a
-- Cluster the channel `rt:{sid}` lives in the stream's slot, with the keys (Redis >= 7).
local function broadcast(seq_key, hist_key, channel, msg_type, ts, data_json, hist_size)
  local seq = redis.call('INCR', seq_key)
  local msg = '{"type":"' .. msg_type .. '","seq":' .. seq .. ',"ts":' .. ts
    .. ',"data":' .. data_json .. '}'
  redis.call('XADD', hist_key, 'MAXLEN', '~', hist_size, seq .. '-0', 'm', msg)
  redis.call('SPUBLISH', channel, msg)
  return seq
end
