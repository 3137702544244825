-- Shared head of every inventory script. All scripts take the same KEYS of one stream
-- (they share the hash tag {sid}, so the scripts run on Redis Cluster too):
local K_PRODUCTS = KEYS[1] -- hash sku -> product JSON
local K_STOCK = KEYS[2]    -- hash sku -> units a viewer can reserve now
local K_SALES = KEYS[3]    -- hash sku -> JSON of the sku's active flash sale
local K_HELD = KEYS[4]     -- hash sku -> regular units set aside while a sale runs
local K_RES = KEYS[5]      -- hash reservation id -> reservation JSON
local K_IDEM = KEYS[6]     -- hash "viewer\nkey" -> reservation id
local K_COUNTS = KEYS[7]   -- hash "viewer\nsku[\nsale]" -> units the viewer holds
local K_EXPIRY = KEYS[8]   -- zset reservation id -> expires_at of open reservations
local K_EVENTS = KEYS[9]   -- stream of events for the order drainer (docs/EVENTS.md)
local K_GBUYS = KEYS[10]   -- hash group-buy id -> group-buy JSON
local K_GROUPS = KEYS[11]  -- hash group id -> group JSON with its members
local K_GEXPIRY = KEYS[12] -- zset group id -> window end of open groups
local K_REFS = KEYS[13]    -- hash viewer -> the viewer who referred it here
local K_RATES = KEYS[14]   -- hash level1_bps, level2_bps (referral commission now)
local K_CHECKED = KEYS[15] -- run_id of the Redis server the stream was last checked on
local K_SETTLED = KEYS[16] -- zset reservation id -> settled at (paid, cancelled, expired)
local K_PURGED = KEYS[17]  -- hash: rows and paid units per sku the purge removed
local N_KEYS = 17          -- scripts that take more KEYS find theirs after these

-- Set by lua/groups_common.lua: what a group reservation's release does to its group.
local group_released

-- The freshness guard (inventory/guard.py): stock changes only on the Redis server the
-- stream was last checked against the order store on. A restarted or failed-over Redis
-- has another run_id (it is not persisted, a replica has its own) and may hold older
-- state than SQL (lost AOF tail, older snapshot, replica that lacked writes), so every
-- change refuses until the stream has been rebuilt from SQL (lua/rebuild.lua).
local function server_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end

-- A stream without events key has no Redis state at all (never created, or retired):
-- nothing there can be sold, and the script gives its own answer (not_found...).
local function require_checked()
  if redis.call('GET', K_CHECKED) ~= server_id() and redis.call('EXISTS', K_EVENTS) == 1 then
    error({err = 'STREAM_RECOVERING the stream was not checked against the order store '
      .. 'on this Redis server yet'})
  end
end

-- The last ARGV of every script is the caller's clock (epoch ms). Redis' TIME would
-- spare the NTP-synced hosts' skew but costs a quarter of reserve.lua's throughput; all
-- decisions stay atomic either way, a skew only moves an expiry by that much.
local function now_ms()
  return tonumber(ARGV[#ARGV])
end

local function present(v)
  return v ~= nil and v ~= cjson.null
end

-- `data` is a table, or its JSON already encoded (saves encoding it twice).
local function event(type_, data)
  if type(data) == 'table' then
    data = cjson.encode(data)
  end
  redis.call('XADD', K_EVENTS, '*', 'type', type_, 'data', data)
end

local function count_field(viewer, sku, sale_id)
  if present(sale_id) then
    return viewer .. '\n' .. sku .. '\n' .. sale_id
  end
  return viewer .. '\n' .. sku
end

local function stock_left(sku)
  return tonumber(redis.call('HGET', K_STOCK, sku) or '0')
end

-- End a sale: its unsold units and the units held aside go back to regular stock.
local function end_sale(sale, reason, now)
  local left = stock_left(sale.sku)
  local held = tonumber(redis.call('HGET', K_HELD, sale.sku) or '0')
  redis.call('HSET', K_STOCK, sale.sku, left + held)
  redis.call('HDEL', K_HELD, sale.sku)
  redis.call('HDEL', K_SALES, sale.sku)
  local ended = {
    id = sale.id, stream_id = sale.stream_id, sku = sale.sku, ended_at = now,
    reason = reason, sold = sale.stock - left, price_cents = sale.price_cents,
  }
  local raw = cjson.encode(ended)
  event('sale.ended', raw)
  return raw
end

-- The sku's sale if it runs now; a sale whose time is up is ended here (second value).
local function active_sale(sku, now)
  local raw = redis.call('HGET', K_SALES, sku)
  if not raw then
    return nil, nil
  end
  local sale = cjson.decode(raw)
  if now >= sale.ends_at then
    return nil, end_sale(sale, 'time', now)
  end
  return sale, nil
end

-- Stock of an ended reservation goes back where it came from: to the running sale it
-- was bought in, to the held regular units if another sale runs, else to regular stock.
local function give_back(r)
  local raw = redis.call('HGET', K_SALES, r.sku)
  if raw and cjson.decode(raw).id ~= r.sale_id then
    redis.call('HINCRBY', K_HELD, r.sku, r.qty)
  else
    redis.call('HINCRBY', K_STOCK, r.sku, r.qty)
  end
  local field = count_field(r.viewer_id, r.sku, r.sale_id)
  if redis.call('HINCRBY', K_COUNTS, field, -r.qty) <= 0 then
    redis.call('HDEL', K_COUNTS, field)
  end
  redis.call('ZREM', K_EXPIRY, r.id)
  if present(r.group_id) then
    group_released(r)
  end
end

-- Who earns a commission on a payment by `viewer` now, at the rates in force now; nil
-- when the viewer was brought by nobody. Kept on the order so its events carry it.
local function referral_snapshot(viewer)
  local l1 = redis.call('HGET', K_REFS, viewer)
  if not l1 then
    return nil
  end
  local rates = redis.call('HMGET', K_RATES, 'level1_bps', 'level2_bps')
  return {
    level1 = l1, level2 = redis.call('HGET', K_REFS, l1) or cjson.null,
    level1_bps = tonumber(rates[1] or '0'), level2_bps = tonumber(rates[2] or '0'),
  }
end

-- A settled reservation is kept for status reads and key replays, then purged.
local function settle(r, now)
  redis.call('ZADD', K_SETTLED, now, r.id)
end

local function expire_reservation(r, now)
  give_back(r)
  settle(r, now)
  r.status = 'expired'
  r.expired_at = now
  local raw = cjson.encode(r)
  redis.call('HSET', K_RES, r.id, raw)
  event('reservation.expired', raw)
  return raw
end

-- The reservation `id` of `viewer`, if it is still open: returns (r, now), or (nil, the
-- answer to give) when it is unknown, another viewer's, already settled, or overdue (then
-- it expires here, giving its stock back).
local function open_reservation(id, viewer)
  local raw = redis.call('HGET', K_RES, id)
  if not raw then
    return nil, {'not_found', ''}
  end
  local r = cjson.decode(raw)
  if r.viewer_id ~= viewer then
    return nil, {'forbidden', ''}
  end
  if r.status ~= 'reserved' then
    return nil, {r.status, raw}
  end
  local now = now_ms()
  if now >= r.expires_at then
    return nil, {'expired_now', expire_reservation(r, now)}
  end
  return r, now
end
