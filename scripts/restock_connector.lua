-- restock_connector.lua: what the shop connectors (shopify.lua,
-- woocommerce.lua, medusa.lua) share: signature checks, applying a webhook
-- once, exact decimal amounts, ISO 8601 times and small HTTP helpers. Not
-- meant to be set up on its own.

local restock = require "restock"
local crypto = restock.crypto

local M = {}

-- True when v is a value (neither nil nor JSON null).
function M.present(v)
  return v ~= nil and v ~= restock.json.null
end

-- A shop's id (a number or a string) as restockd's id string, or nil.
function M.id(v)
  if math.type(v) == "integer" then
    return string.format("%d", v)
  elseif type(v) == "number" and v == math.floor(v) and v >= 0 then
    return string.format("%.0f", v)
  elseif type(v) == "string" and #v > 0 and #v <= 255 then
    return v
  end
  return nil
end

-- A JSON answer a route returns: status, body.
function M.answer(status, kind, message)
  return status, { type = kind, message = message }
end

-- Checks `header` (a base64 HMAC-SHA256 of `body` keyed with `secret`, as
-- Shopify and WooCommerce sign their webhooks) in constant time. Returns
-- true, or false and why: missing, garbled (not base64 of 32 bytes) or
-- wrong.
function M.verify_base64_hmac(secret, body, header)
  if type(header) ~= "string" or header == "" then
    return false, "the signature header is missing"
  end
  local given = crypto.base64_decode(header)
  if not given or #given ~= 32 then
    return false, "the signature header is not base64 of an HMAC-SHA256"
  end
  if not crypto.equal(given, crypto.hmac_sha256(secret, body)) then
    return false, "the signature does not match the body"
  end
  return true
end

-- Deliveries being applied now, by key: a copy that arrives while the
-- first is still being applied is refused as a repeat too.
local in_flight = {}

-- Runs fn() once per `key` (a webhook's id): a key already recorded in
-- restock.kv, or in flight in this process, returns "repeat". After fn
-- succeeds (returns a truthy first value) the key is recorded for `ttl`
-- ms, so that the shop's retries of it are applied once. Returns what fn
-- returned, or "repeat".
function M.once(key, ttl, fn)
  if in_flight[key] then
    return "repeat"
  end
  local seen, err = restock.kv.get(key)
  if err then
    return nil, err
  end
  if seen then
    return "repeat"
  end
  in_flight[key] = true
  local ok, a, b, c = pcall(fn)
  in_flight[key] = nil
  if not ok then
    error(a, 0)
  end
  if a then
    local stored, serr = restock.kv.set(key, tostring(os.time()),
      { ttl = ttl })
    if not stored then
      restock.log.warn("could not record %s as applied: %s", key, serr)
    end
  end
  return a, b, c
end

-- restock.kv.set unless the stored value is already `value`: most mappings
-- do not change, and a read is cheaper than a write.
function M.kv_put(key, value)
  local old = restock.kv.get(key)
  if old == value then
    return true
  end
  return restock.kv.set(key, value)
end

-- ---- exact decimal amounts -------------------------------------------------

local SCALE = 1000000

-- A decimal amount ("49.99", 49.99, 49) as an integer count of millionths,
-- or nil for anything else (negative amounts too).
function M.micros(v)
  if math.type(v) == "integer" then
    return v >= 0 and v * SCALE or nil
  elseif type(v) == "number" then
    if v ~= v or v < 0 or v > 1e12 then
      return nil
    end
    return math.floor(v * SCALE + 0.5)
  elseif type(v) == "string" then
    local whole, frac = v:match("^(%d+)%.?(%d*)$")
    if not whole or #whole > 12 or #frac > 6 then
      return nil
    end
    return tonumber(whole) * SCALE + tonumber((frac .. "000000"):sub(1, 6))
  end
  return nil
end

-- Millionths as the decimal string restock.orders.record takes ("49.990000").
function M.decimal(micros)
  if micros < 0 then
    micros = 0
  end
  return string.format("%d.%06d", micros // SCALE, micros % SCALE)
end

-- ISO 4217 minor units, for amounts a shop gives in minor units (Medusa
-- v1's cents).
local ZERO_DECIMALS = {
  BIF = 1, CLP = 1, DJF = 1, GNF = 1, ISK = 1, JPY = 1, KMF = 1, KRW = 1,
  PYG = 1, RWF = 1, UGX = 1, UYI = 1, VND = 1, VUV = 1, XAF = 1, XOF = 1,
  XPF = 1,
}
local THREE_DECIMALS = {
  BHD = 1, IQD = 1, JOD = 1, KWD = 1, LYD = 1, OMR = 1, TND = 1,
}

-- An amount in the currency's minor unit (1999 cents) as millionths.
function M.minor_to_micros(minor, currency)
  currency = tostring(currency or ""):upper()
  local per_minor = ZERO_DECIMALS[currency] and SCALE
    or THREE_DECIMALS[currency] and SCALE // 1000 or SCALE // 100
  return math.tointeger(math.floor(minor)) * per_minor
end

-- ---- times ---------------------------------------------------------------------

local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- An ISO 8601 time ("2026-03-01T10:00:00-05:00", with a fraction, "Z" or
-- no zone for UTC) as milliseconds since the epoch, or nil.
function M.iso_ms(s)
  if type(s) ~= "string" then
    return nil
  end
  local y, mo, d, h, mi, sec, rest =
    s:match("^(%d%d%d%d)-(%d%d)-(%d%d)[T ](%d%d):(%d%d):?(%d*)(.*)$")
  if not y then
    y, mo, d = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)$")
    if not y then
      return nil
    end
    h, mi, sec, rest = "0", "0", "0", ""
  end
  local frac = rest:match("^[%.,](%d+)") or ""
  rest = rest:sub(frac == "" and 1 or #frac + 2)
  local offset = 0
  if rest == "Z" or rest == "z" or rest == "" then
    offset = 0
  else
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then
      sign, oh = rest:match("^([+-])(%d%d)$")
      om = "0"
    end
    if not sign then
      return nil
    end
    offset = (tonumber(oh) * 60 + tonumber(om)) * (sign == "-" and -1 or 1)
  end
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  local secs = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60
    + (tonumber(sec) or 0) - offset * 60
  local ms = tonumber(((frac .. "000"):sub(1, 3))) or 0
  return secs * 1000 + ms
end

-- Milliseconds since the epoch as UTC ISO 8601 with milliseconds.
function M.iso(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000)
    .. string.format(".%03dZ", ms % 1000)
end

-- True when the time `at` is older than the one stored under `key` (the
-- shop sent an update out of order); records `at` otherwise.
function M.older(key, at)
  local ms = M.iso_ms(at)
  if not ms then
    return false
  end
  local seen = tonumber(restock.kv.get(key) or "")
  if seen and ms < seen then
    return true
  end
  if not seen or ms > seen then
    restock.kv.set(key, tostring(ms))
  end
  return false
end

-- ---- HTTP ------------------------------------------------------------------------

-- Percent-encodes a query value.
function M.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

-- GETs url with headers and decodes the JSON answer: the value and the
-- response, or nil and why.
function M.get_json(url, headers, timeout)
  local res, err = restock.http.request {
    method = "GET", url = url, headers = headers, timeout = timeout or 20000,
  }
  if not res then
    return nil, "GET " .. url .. ": " .. err
  end
  if res.status ~= 200 then
    return nil, string.format("GET %s answered %d: %s", url, res.status,
      (res.body or ""):sub(1, 200))
  end
  local value, jerr = restock.json.decode(res.body)
  if value == nil then
    return nil, "GET " .. url .. ": " .. jerr
  end
  return value, res
end

return M
