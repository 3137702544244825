-- Group buys (inventory/groups.py), shared by every inventory script after common.lua.
-- A group is one JSON record in K_GROUPS: its counts (members, paid, needed), its status
-- (open -> formed or failed, once) and its roster (viewer -> {rid, paid}). A member's
-- hold is an ordinary reservation (qty 1, the group price) tagged with group_id, so the
-- reservation scripts (confirm, cancel, expire) keep working on it; give_back calls
-- group_released below when such a hold ends.

-- Groups whose counts changed in this script run: returned to the caller, which
-- announces `group.progress` for them.
local changed_groups = {}

local function changed_json()
  if #changed_groups == 0 then
    return '[]'
  end
  return cjson.encode(changed_groups)
end

local function load_group(gid)
  local raw = redis.call('HGET', K_GROUPS, gid)
  if not raw then
    return nil
  end
  return cjson.decode(raw)
end

local function save_group(g)
  local raw = cjson.encode(g)
  redis.call('HSET', K_GROUPS, g.id, raw)
  return raw
end

-- A unit of the sku for a group: regular stock, or the regular units held aside while
-- a flash sale runs (a group never takes the sale's units); give_back returns it there.
local function take_unit(sku, now)
  local sale, ended = active_sale(sku, now)
  local key = K_STOCK
  if sale then
    key = K_HELD
  end
  local left = tonumber(redis.call('HGET', key, sku) or '0')
  if left < 1 then
    return false, ended
  end
  redis.call('HSET', key, sku, left - 1)
  return true, ended
end

group_released = function(r)
  -- The unit leaves the group buy's cap whatever happens to the group.
  redis.call('HINCRBY', K_GBUYS, r.group_buy_id .. ':used', -r.qty)
  local g = load_group(r.group_id)
  -- A settled group keeps its roster as the record of who was in it.
  if not g or g.status ~= 'open' then
    return
  end
  local m = g.roster[r.viewer_id]
  if not m or m.rid ~= r.id then
    return
  end
  if m.paid == 1 then
    g.paid = g.paid - 1
  end
  g.roster[r.viewer_id] = nil
  g.members = g.members - 1
  g.needed = g.group_size - g.members
  save_group(g)
  changed_groups[#changed_groups + 1] = g.id
end

local function group_event(type_, g)
  event(type_, {
    id = g.id, stream_id = g.stream_id, group_buy_id = g.group_buy_id, sku = g.sku,
    share_code = g.share_code, group_size = g.group_size, price_cents = g.price_cents,
    opened_at = g.opened_at, expires_at = g.expires_at, status = g.status,
    members = g.members, paid = g.paid, settled_at = g.formed_at or g.failed_at,
  })
end

-- The window ended before enough members paid: every paid member is refunded, every
-- unpaid hold released, each unit back to stock once (status checks make it so).
local function fail_group(g, now)
  g.status = 'failed'
  g.failed_at = now
  save_group(g) -- first: the releases below then leave the roster as it was
  redis.call('ZREM', K_GEXPIRY, g.id)
  for _, m in pairs(g.roster) do
    local raw = redis.call('HGET', K_RES, m.rid)
    if raw then
      local r = cjson.decode(raw)
      if r.status == 'reserved' then
        give_back(r)
        r.status = 'expired'
        r.expired_at = now
        r.reason = 'group_failed'
        raw = cjson.encode(r)
        redis.call('HSET', K_RES, r.id, raw)
        event('reservation.expired', raw)
      elseif r.status == 'group_pending' then
        give_back(r)
        r.status = 'refunded'
        r.refunded_at = now
        r.refunded_from = 'group_pending'
        raw = cjson.encode(r)
        redis.call('HSET', K_RES, r.id, raw)
        event('reservation.refunded', raw)
      end
    end
  end
  group_event('group.failed', g)
  return cjson.encode(g)
end

-- The last member paid: every member's order becomes paid in this one step.
local function form_group(g, now)
  g.status = 'formed'
  g.formed_at = now
  for _, m in pairs(g.roster) do
    local r = cjson.decode(redis.call('HGET', K_RES, m.rid))
    r.status = 'paid'
    r.formed_at = now
    local raw = cjson.encode(r)
    redis.call('HSET', K_RES, r.id, raw)
    event('reservation.confirmed', raw)
  end
  redis.call('ZREM', K_GEXPIRY, g.id)
  group_event('group.formed', g)
  return save_group(g)
end

-- Add `viewer` to group `g` with a held unit. Nothing is written unless every check
-- passes. Returns (outcome, reservation JSON or '', failed group JSON or '', first):
-- first = 1 when the hold is the stream's earliest to expire (the caller registers it).
local function add_member(g, gb, viewer, key, rid, ttl, now)
  local idem_field = viewer .. '\n' .. key
  local existing = redis.call('HGET', K_IDEM, idem_field)
  if existing then
    local raw = redis.call('HGET', K_RES, existing)
    local r = cjson.decode(raw)
    if r.group_id == g.id then
      return 'existing', raw, '', 0
    end
    return 'idempotency_conflict', raw, '', 0
  end
  if g.status ~= 'open' then
    return 'group_closed', '', '', 0
  end
  if now >= g.expires_at then
    return 'group_closed', '', fail_group(g, now), 0
  end
  if g.roster[viewer] then
    return 'already_member', '', '', 0
  end
  if g.members >= g.group_size then
    return 'group_full', '', '', 0
  end
  local raw_product = redis.call('HGET', K_PRODUCTS, g.sku)
  if not raw_product then
    return 'unknown_sku', '', '', 0
  end
  local limit = cjson.decode(raw_product).per_user_limit
  local field = count_field(viewer, g.sku, nil)
  local held = tonumber(redis.call('HGET', K_COUNTS, field) or '0')
  if present(limit) and held + 1 > limit then
    return 'limit_exceeded', '', '', 0
  end
  local used_field = gb.id .. ':used'
  if present(gb.stock) and tonumber(redis.call('HGET', K_GBUYS, used_field) or '0') >= gb.stock then
    return 'sold_out', '', '', 0
  end
  if not take_unit(g.sku, now) then
    return 'sold_out', '', '', 0
  end
  redis.call('HINCRBY', K_COUNTS, field, 1)
  redis.call('HINCRBY', K_GBUYS, used_field, 1)
  local r = {
    id = rid, stream_id = g.stream_id, viewer_id = viewer, sku = g.sku, qty = 1,
    price_cents = g.price_cents, sale_id = cjson.null, key = key, created_at = now,
    expires_at = now + ttl, status = 'reserved', group_id = g.id,
    group_buy_id = g.group_buy_id,
  }
  local raw = cjson.encode(r)
  redis.call('HSET', K_RES, rid, raw)
  redis.call('HSET', K_IDEM, idem_field, rid)
  redis.call('ZADD', K_EXPIRY, r.expires_at, rid)
  local first = 0
  if redis.call('ZRANGE', K_EXPIRY, 0, 0)[1] == rid then
    first = 1
  end
  event('reservation.created', raw)
  g.roster[viewer] = {rid = rid, paid = 0}
  g.members = g.members + 1
  g.needed = g.group_size - g.members
  save_group(g)
  changed_groups[#changed_groups + 1] = g.id
  return 'created', raw, '', first
end
