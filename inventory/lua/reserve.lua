-- Reserve: for each buy request of a batch (one or more, all of this stream, in order),
-- idempotency key, rate limit, sku, sale window, per-viewer limit and stock are checked
-- and the reservation recorded with its expiry and event. Each request sees the effects
-- of the ones before it, exactly as if each were its own call; the batch only spares
-- a script call and a round trip per request when a burst of buyers comes in together.
-- KEYS[N_KEYS + 1] the stream's record (hash: id, status, ...),
-- KEYS[N_KEYS + 1 + i] the rate-limit counter of request i's viewer in this stream
-- ARGV[1] ttl ms, ARGV[2] buys per window (0: no limit), ARGV[3] window ms,
-- ARGV[4] stream id, ARGV[5] '1': the stream's record must exist and say live (else
-- every request answers unknown_stream or stream_ended), ARGV[6] the stream's channel
-- for messages to one viewer (realtime/personal.py), then 7 values per request from
-- ARGV[7]: viewer id, sku, qty, idempotency key, new reservation id, sale id the viewer
-- asks for or '', '1' to send the reservation (new or the same again) to the viewer's
-- sockets as a `reservation` message
-- Returns 4 values per request: outcome, reservation JSON or '', ended sale JSON or '',
-- first: 1 when the new reservation is the stream's earliest to expire (the caller then
-- registers the stream with the sweepers; otherwise it is registered already).
local TTL, RATE, WINDOW, SID = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local CHECK_STREAM, CHANNEL = ARGV[5] == '1', ARGV[6]
local FIRST_ARG, ARGS_PER = 7, 7
local K_META = KEYS[N_KEYS + 1]
local n = #KEYS - N_KEYS - 1
if n < 1 or #ARGV ~= FIRST_ARG - 1 + n * ARGS_PER + 1 then -- head, requests, the clock
  return redis.error_reply('reserve.lua: expected 7 ARGV per rate key, got ' .. #ARGV)
end

-- The stream first, as the API did before it asked the inventory (an ended stream
-- answers stream_ended even where the stock would need a check against SQL).
if CHECK_STREAM then
  local meta = redis.call('HMGET', K_META, 'id', 'status')
  -- A record without its id is a leftover of a write that raced the retirement.
  local refusal = (not meta[1] and 'unknown_stream') or (meta[2] ~= 'live' and 'stream_ended')
  if refusal then
    local out = {}
    for _ = 1, n do
      out[#out + 1] = refusal
      out[#out + 1] = ''
      out[#out + 1] = ''
      out[#out + 1] = 0
    end
    return out
  end
end
require_checked()

-- The buyer's own `reservation` message (as realtime/personal.py's send_to_viewer
-- writes it), published in the same step as the reservation.
local function tell_viewer(viewer, raw, now)
  redis.call('SPUBLISH', CHANNEL, '{"to-viewer":' .. cjson.encode(viewer)
    .. ',"m":{"type":"reservation","seq":null,"ts":' .. string.format('%d', now)
    .. ',"data":' .. raw .. '}}')
end

local products = {} -- sku -> decoded product: decoded once per batch

local function reserve(rate_key, viewer, sku, qty_arg, key, new_id, want_sale, now)
  local qty = tonumber(qty_arg)
  if not qty or qty < 1 or qty % 1 ~= 0 then
    return 'invalid_qty', '', '', 0
  end
  local idem_field = viewer .. '\n' .. key
  local existing = redis.call('HGET', K_IDEM, idem_field)
  if existing then
    local raw = redis.call('HGET', K_RES, existing)
    local r = cjson.decode(raw)
    if r.sku ~= sku or r.qty ~= qty then
      return 'idempotency_conflict', raw, '', 0
    end
    return 'existing', raw, '', 0
  end
  if RATE > 0 then
    local n = redis.call('INCR', rate_key)
    if n == 1 then
      redis.call('PEXPIRE', rate_key, WINDOW)
    end
    if n > RATE then
      return 'rate_limited', '', '', 0
    end
  end
  local product = products[sku]
  if product == nil then
    local raw_product = redis.call('HGET', K_PRODUCTS, sku)
    if not raw_product then
      return 'unknown_sku', '', '', 0
    end
    product = cjson.decode(raw_product)
    products[sku] = product
  end
  local sale, ended = active_sale(sku, now)
  ended = ended or ''
  if want_sale ~= '' and (sale == nil or sale.id ~= want_sale) then
    return 'sale_not_active', '', ended, 0
  end
  local limit, price, sale_id
  if sale then
    limit, price, sale_id = sale.per_user_limit, sale.price_cents, sale.id
  else
    limit, price, sale_id = product.per_user_limit, product.price_cents, cjson.null
  end
  local field = count_field(viewer, sku, sale_id)
  local held = tonumber(redis.call('HGET', K_COUNTS, field) or '0')
  if present(limit) and held + qty > limit then
    return 'limit_exceeded', '', ended, 0
  end
  local left = stock_left(sku)
  if left < qty then
    return 'sold_out', '', ended, 0
  end
  redis.call('HSET', K_STOCK, sku, left - qty)
  redis.call('HINCRBY', K_COUNTS, field, qty)
  local r = {
    id = new_id, stream_id = SID, viewer_id = viewer, sku = sku, qty = qty,
    price_cents = price, sale_id = sale_id, key = key, created_at = now,
    expires_at = now + TTL, status = 'reserved',
  }
  local raw = cjson.encode(r)
  redis.call('HSET', K_RES, r.id, raw)
  redis.call('HSET', K_IDEM, idem_field, r.id)
  redis.call('ZADD', K_EXPIRY, r.expires_at, r.id)
  local first = 0
  if redis.call('ZRANGE', K_EXPIRY, 0, 0)[1] == r.id then
    first = 1
  end
  event('reservation.created', raw)
  if sale and left - qty == 0 then
    ended = end_sale(sale, 'sold_out', now)
  end
  return 'created', raw, ended, first
end

local now = now_ms()
local out = {}
for i = 1, n do
  local a = FIRST_ARG + (i - 1) * ARGS_PER
  local viewer = ARGV[a]
  local outcome, raw, ended, first = reserve(
    KEYS[N_KEYS + 1 + i], viewer, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4],
    ARGV[a + 5], now
  )
  if ARGV[a + 6] == '1' and (outcome == 'created' or outcome == 'existing') then
    tell_viewer(viewer, raw, now)
  end
  out[#out + 1] = outcome
  out[#out + 1] = raw
  out[#out + 1] = ended
  out[#out + 1] = first
end
return out
