-- Shared code for the multi-warehouse specs (spec/warehouse_*_spec.lua):
-- a server whose plugin appends every restock-notification.restocked event
-- to a file, the two-region setup of the contract's scenarios (EU and US
-- locations, one sales channel each, publishable keys), and helpers to
-- subscribe, read the recorded events and wait until the engine is idle.
local helpers = require "spec.support.helpers"
local cjson = require "cjson"

local W = {}

W.RESTOCKED = "restock-notification.restocked"

W.NOT_SOLD_OUT = "You cannot sign up for restock notifications "
  .. "on a product that is not sold out"

-- The plugin: every restocked event's data as one JSON line in path.
-- options is Lua table-constructor text for restock.options.
local function plugin(path, options)
  return string.format([[
local restock = require "restock"
restock.options %s
local PATH = %q
restock.subscribe("restock-notification.restocked", function(data)
  local f = assert(io.open(PATH, "a"))
  f:write(restock.json.encode(data), "\n")
  f:close()
end, { name = "record-restocks" })
]], options or "{ trigger_delay = 0 }", path)
end

-- Starts a server with the recording plugin. opts.options: the text of the
-- options table ("{ trigger_delay = 0 }" by default). Returns the server;
-- its events file is server.restocks_path.
function W.start(opts)
  opts = opts or {}
  local dir = helpers.tmpdir()
  local path = dir .. "/restocked.jsonl"
  local server = helpers.start { dir = dir,
    plugin = plugin(path, opts.options),
    env = opts.env }
  server.restocks_path = path
  return server
end

-- Starts the server again on the same directory, database and plugin
-- (after server:kill9() or server:stop()).
function W.restart(server)
  local again = helpers.start { dir = server.dir, db = server.db,
    config = server.plugin_path, no_migrate = true }
  again.restocks_path = server.restocks_path
  return again
end

-- An admin call that must answer 200; returns the decoded body.
function W.ok(server, method, path, body)
  local res = helpers.admin(server, method, path, body)
  helpers.assert_status(res, 200)
  assert(type(res.json) == "table", "no JSON body: " .. helpers.describe(res))
  return res.json
end

function W.post(server, path, body)
  return W.ok(server, "POST", path, body)
end

-- Creates (or updates) a stock location.
function W.location(server, id, name)
  return W.post(server, "/admin/stock-locations",
    { id = id, name = name or id }).stock_location
end

-- Creates (or replaces the locations of) a sales channel. An empty list is
-- sent as a literal [] (this cjson has no empty_array).
function W.channel(server, id, location_ids, name)
  if #location_ids == 0 then
    return W.post(server, "/admin/sales-channels", string.format(
      '{"id":%s,"name":%s,"location_ids":[]}', cjson.encode(id),
      cjson.encode(name or id))).sales_channel
  end
  return W.post(server, "/admin/sales-channels",
    { id = id, name = name or id, location_ids = location_ids }).sales_channel
end

-- Creates (or replaces the channels of) a publishable key.
function W.key(server, id, channel_ids)
  if #channel_ids == 0 then
    return W.post(server, "/admin/publishable-api-keys", string.format(
      '{"id":%s,"sales_channel_ids":[]}', cjson.encode(id)))
      .publishable_api_key
  end
  return W.post(server, "/admin/publishable-api-keys",
    { id = id, sales_channel_ids = channel_ids }).publishable_api_key
end

-- Sets an inventory level; fields is {stocked_quantity=, reserved_quantity=}.
function W.level(server, variant_id, location_id, fields)
  local body = { variant_id = variant_id, location_id = location_id }
  for k, v in pairs(fields or {}) do
    body[k] = v
  end
  return W.post(server, "/admin/inventory-levels", body).inventory_level
end

-- Creates variants with default fields (inventory_quantity 0).
function W.variants(server, ...)
  local list = {}
  for i, id in ipairs({ ... }) do
    list[i] = { id = id }
  end
  return W.post(server, "/admin/variants", { variants = list }).variants
end

-- GET /admin/variants/{id}; returns the variant.
function W.variant(server, id)
  return W.ok(server, "GET", "/admin/variants/" .. helpers.urlencode(id))
    .variant
end

-- The two regions of the contract's scenarios: loc_eu and loc_us, sc_eu
-- selling from loc_eu and sc_us from loc_us, pk_eu covering sc_eu only and
-- pk_both covering both channels.
function W.two_regions(server)
  W.location(server, "loc_eu", "Europe")
  W.location(server, "loc_us", "United States")
  W.channel(server, "sc_eu", { "loc_eu" })
  W.channel(server, "sc_us", { "loc_us" })
  W.key(server, "pk_eu", { "sc_eu" })
  W.key(server, "pk_both", { "sc_eu", "sc_us" })
end

-- POST /restock-notifications/variants/{variant_id}. opts: channel (the
-- body's sales_channel_id), key (x-publishable-api-key). Returns the
-- response.
function W.subscribe(server, variant_id, email, opts)
  opts = opts or {}
  local headers = {}
  if opts.key then
    headers["x-publishable-api-key"] = opts.key
  end
  return helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { headers = headers,
      json = { email = email, sales_channel_id = opts.channel } })
end

-- Subscribes and asserts 201 with the given channel (nil: unscoped).
function W.subscribed(server, variant_id, email, opts, channel)
  local res = W.subscribe(server, variant_id, email, opts)
  helpers.assert_status(res, 201)
  local n = res.json and res.json.restock_notification
  assert(type(n) == "table", "no restock_notification in " .. res.body)
  assert(n.variant_id == variant_id, "variant_id in " .. res.body)
  assert(n.email == email, "email in " .. res.body)
  local want = channel == nil and helpers.null or channel
  assert(n.sales_channel_id == want, string.format(
    "expected sales_channel_id %s, got %s", tostring(channel), res.body))
  return n
end

-- Subscribes and asserts 400 not_allowed with the sold-out message.
function W.refused_in_stock(server, variant_id, email, opts)
  local res = W.subscribe(server, variant_id, email, opts)
  helpers.assert_error(res, 400, "not_allowed", W.NOT_SOLD_OUT)
end

-- Every restocked event the plugin has recorded so far, in order. A line
-- not yet complete is skipped.
function W.restocks(server)
  local out = {}
  local text = helpers.read_file(server.restocks_path) or ""
  for line in text:gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, line)
    if ok and type(v) == "table" then
      out[#out + 1] = v
    end
  end
  return out
end

-- The recorded events of variant_id in scope channel (nil: unscoped, the
-- events without a sales_channel_id).
function W.events_for(server, variant_id, channel)
  local out = {}
  for _, e in ipairs(W.restocks(server)) do
    if e.variant_id == variant_id and e.sales_channel_id == channel then
      out[#out + 1] = e
    end
  end
  return out
end

-- The emails of all recorded events of variant_id in scope channel.
function W.emails_for(server, variant_id, channel)
  local emails = {}
  for _, e in ipairs(W.events_for(server, variant_id, channel)) do
    for _, m in ipairs(e.emails or {}) do
      emails[#emails + 1] = m
    end
  end
  return emails
end

-- Waits (5 s by default) until an event of variant_id in scope channel is
-- recorded; returns the emails of that scope's events, or raises.
function W.wait_emails(server, variant_id, channel, timeout)
  local emails = helpers.wait_for(function()
    local e = W.emails_for(server, variant_id, channel)
    if #e > 0 then
      return e
    end
  end, timeout or 5)
  assert(emails, string.format("no restocked event for %s in scope %s; "
    .. "recorded: %s\nstderr:\n%s", variant_id, tostring(channel),
    helpers.read_file(server.restocks_path) or "(nothing)",
    server:stderr()))
  return emails
end

-- Compact text of all recorded events, for assertion messages.
function W.dump(server)
  return helpers.read_file(server.restocks_path) or "(no events)"
end

local sentinels = 0

-- Waits until every check scheduled before this call has had its chance to
-- run and its events have been delivered: it restocks a fresh variant with
-- one subscriber (a check scheduled after everything before it) and waits
-- for that event, then lets a short grace period pass. Specs call it before
-- asserting that something did not fire.
function W.settle(server)
  sentinels = sentinels + 1
  local id = string.format("zz_sentinel_%d", sentinels)
  W.post(server, "/admin/variants", { id = id, inventory_quantity = 0 })
  W.subscribed(server, id, "sentinel@example.com")
  W.post(server, "/admin/variants/" .. id, { inventory_quantity = 1000 })
  W.wait_emails(server, id, nil, 10)
  require("socket").sleep(0.1)
end

-- The emails of the active (or, with status, notified) subscriptions of a
-- query, in the admin list's order.
function W.list(server, query)
  local json = W.ok(server, "GET", "/admin/restock-notifications"
    .. helpers.query(query))
  local emails = {}
  for i, n in ipairs(json.restock_notifications) do
    emails[i] = n.email
  end
  return emails, json
end

-- The number of restocked events written (any status), from /admin/events.
function W.event_count(server)
  return helpers.events(server, { name = W.RESTOCKED }).count
end

return W
