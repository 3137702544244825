-- KEYS[1] seq counter, KEYS[2] history stream
-- ARGV[1] channel, ARGV[2] type, ARGV[3] ts (ms), ARGV[4] data as JSON, ARGV[5] history size
return broadcast(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
