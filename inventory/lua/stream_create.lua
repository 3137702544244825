-- Record a new stream with its `stream.created` event, and mark it checked on this
-- Redis server (the freshness guard of guard.py: a new stream has nothing in SQL to be
-- behind). Runs alone, without common.lua: there is no checked key to require yet.
-- KEYS[1] meta, KEYS[2] events, KEYS[3] checked; ARGV[1] event data, then the record's
-- field/value pairs.
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('XADD', KEYS[2], '*', 'type', 'stream.created', 'data', ARGV[1])
redis.call('SET', KEYS[3], string.match(redis.call('INFO', 'server'), 'run_id:(%x+)'))
return 1
