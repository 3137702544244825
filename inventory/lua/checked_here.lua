-- Whether the stream was checked against the order store on the Redis server that
-- holds it. Asked of that server itself: on a Redis Cluster, INFO from the client goes
-- to some other node, whose run_id says nothing about the stream's (a moved slot then
-- looked "fresh" forever).
-- KEYS[1] the stream's `checked` key. Returns 1 checked here, 0 not.
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
if redis.call('GET', KEYS[1]) == run_id then return 1 end
return 0
