-- Conversions (contract sections 4 and 5): restock.orders.record marks the
-- notification of an ordered variant to the ordering email converted, when
-- it was sent within conversion_window before the order, and
-- GET /admin/reports/conversions reports what the notifications sold.
local cjson = require "cjson"
local helpers = require "spec.support.helpers"
local outbound = require "spec.support.outbound"
local prom = require "spec.support.prom"

local RESTOCKED = "restock-notification.restocked"

local function plugin(options)
  return 'local restock = require "restock"\n'
    .. "restock.options { " .. (options or "") .. " }\n" .. [[
restock.route("POST", "/hooks/order", function(req)
  local ok, err = restock.orders.record(restock.json.decode(req.body))
  return 200, { ok = ok == true, err = err }
end)
]]
end

-- "YYYY-MM-DDTHH:MM:SS.mmmZ" <-> ms since the epoch, for times relative to
-- a notification.
local function parse_iso(s)
  local y, mo, d, h, mi, sec, ms = s:match(
    "^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
  assert(y, "not a stored time: " .. s)
  local t = os.time { year = tonumber(y), month = tonumber(mo),
    day = tonumber(d), hour = tonumber(h), min = tonumber(mi),
    sec = tonumber(sec), isdst = false }
  -- os.time reads the fields as local time; the offset to UTC comes back.
  local utc = os.time(os.date("!*t", t))
  return (2 * t - utc) * 1000 + tonumber(ms)
end

local function iso(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000)
    .. string.format(".%03dZ", ms % 1000)
end

local HOUR, DAY = 3600 * 1000, 86400 * 1000

local function record(server, order)
  local res = helpers.request(server, "POST", "/hooks/order", { json = order })
  helpers.assert_status(res, 200)
  return res.json
end

local function report(server, query)
  local res = helpers.admin(server, "GET", "/admin/reports/conversions"
    .. helpers.query(query or {}))
  helpers.assert_status(res, 200)
  return res.json, res.body
end

-- A variant whose subscribers were notified; returns the time they were.
local function notified(server, variant, emails)
  outbound.sold_out(server, variant)
  for _, e in ipairs(emails) do
    outbound.subscribe(server, variant, e)
  end
  outbound.set_quantity(server, variant, 5)
  local rows = helpers.wait_for(function()
    local res = helpers.admin(server, "GET", "/admin/restock-notifications"
      .. helpers.query { variant_id = variant, status = "notified" })
    local list = res.json.restock_notifications
    return #list == #emails and list
  end, 10)
  assert.truthy(rows, "the subscribers were not notified\n" .. server:stderr())
  outbound.wait_events(server, RESTOCKED, "delivered", 1)
  return parse_iso(rows[1].notified_at)
end

local function conversions_metric(server)
  local res = helpers.request(server, "GET", "/metrics")
  return prom.parse(res.body):value("restockd_conversions_total")
end

describe("conversions", function()
  after_each(helpers.cleanup)

  it("an order after a notification converts it, with its amount", function()
    local server = helpers.start { plugin = plugin() }
    local at = notified(server, "v-shirt", { "ann@example.com",
      "bob@example.com" })
    outbound.sold_out(server, "v-other")
    local r = record(server, {
      order_id = "o-1",
      email = "  Ann@Example.COM ",
      currency = "eur",
      -- Another time zone: the same instant, an hour after the notification.
      created_at = os.date("!%Y-%m-%dT%H:%M:%S", (at + 3 * HOUR) // 1000)
        .. "+02:00",
      items = {
        { variant_id = "v-shirt", quantity = 2, amount = "98.00" },
        { variant_id = "v-other", quantity = 1, amount = "10.00" },
      },
    })
    assert.is_true(r.ok, r.err)
    local j, body = report(server)
    assert.equals(2, j.notified)
    assert.equals(1, j.converted)
    assert.equals(0.5, j.rate)
    assert.same({ EUR = 98 }, j.revenue)
    -- Exactly as the shop sends it, with the currency's two decimals.
    assert.truthy(body:find('"EUR": 98.00', 1, true), body)
    assert.equals(1, #j.by_variant)
    assert.same({ variant_id = "v-shirt", notified = 2, converted = 1,
      rate = 0.5, revenue = { EUR = 98 } }, j.by_variant[1])
    assert.equals(1, conversions_metric(server))
    -- The demand report counts it for its variant, once the variant has
    -- shoppers waiting again.
    outbound.set_quantity(server, "v-shirt", 0)
    outbound.subscribe(server, "v-shirt", "cat@example.com")
    local demand = helpers.admin(server, "GET", "/admin/reports/demand")
    helpers.assert_status(demand, 200)
    assert.equals("v-shirt", demand.json.variants[1].variant_id)
    assert.equals(2, demand.json.variants[1].notified)
    assert.equals(1, demand.json.variants[1].converted)
    -- The history row says so too: the report is built from it.
    local res = helpers.admin(server, "GET", "/admin/restock-notifications"
      .. helpers.query { email = "ann@example.com", status = "notified" })
    assert.equals(1, #res.json.restock_notifications)
  end)

  it("does not convert another email's order, nor one outside the window",
    function()
    local server = helpers.start { plugin = plugin("conversion_window = "
      .. DAY) }
    local at = notified(server, "v-cup", { "bob@example.com" })
    for i, o in ipairs {
      { email = "carl@example.com", at = at + HOUR },  -- never notified
      { email = "bob@example.com", at = at + 2 * DAY }, -- after the window
      { email = "bob@example.com", at = at - HOUR },    -- before it was sent
      { email = cjson.null, at = at + HOUR },           -- no email at all
    } do
      local r = record(server, { order_id = "miss-" .. i, email = o.email,
        currency = "USD", created_at = iso(o.at),
        items = { { variant_id = "v-cup", amount = "12.50" } } })
      assert.is_true(r.ok, r.err)
    end
    local j = report(server)
    assert.equals(1, j.notified)
    assert.equals(0, j.converted)
    assert.equals(0, j.rate)
    assert.same({}, j.revenue)
    assert.equals(0, conversions_metric(server))
    -- Within the window, it does.
    assert.is_true(record(server, { order_id = "hit", email = "bob@example.com",
      currency = "USD", created_at = iso(at + 12 * HOUR),
      items = { { variant_id = "v-cup", amount = "12.50" } } }).ok)
    j = report(server)
    assert.equals(1, j.converted)
    assert.same({ USD = 12.5 }, j.revenue)
  end)

  it("counts an order recorded twice once, and a notification once",
    function()
    local server = helpers.start { plugin = plugin() }
    notified(server, "v-hat", { "ann@example.com" })
    -- Sold out again, and Ann notified a second time: two notifications an
    -- order of the hat could convert.
    outbound.set_quantity(server, "v-hat", 0)
    outbound.subscribe(server, "v-hat", "ann@example.com")
    outbound.set_quantity(server, "v-hat", 5)
    local rows = helpers.wait_for(function()
      local res = helpers.admin(server, "GET", "/admin/restock-notifications"
        .. helpers.query { variant_id = "v-hat", status = "notified" })
      local list = res.json.restock_notifications
      return #list == 2 and list
    end, 10)
    assert.truthy(rows, "Ann was not notified twice\n" .. server:stderr())
    local at = parse_iso(rows[2].notified_at)
    local order = { order_id = 4242, email = "ann@example.com",
      currency = "JPY", created_at = iso(at + HOUR),
      items = { { variant_id = "v-hat", quantity = 1, amount = 4900 } } }
    assert.is_true(record(server, order).ok)
    assert.is_true(record(server, order).ok) -- a webhook repeated
    local j, body = report(server)
    assert.equals(2, j.notified)
    assert.equals(1, j.converted)
    assert.truthy(body:find('"JPY": 4900}', 1, true), body)
    assert.equals(1, conversions_metric(server))
    -- Another order of the hat converts the other notification, once.
    order.order_id = 4243
    assert.is_true(record(server, order).ok)
    assert.is_true(record(server, order).ok)
    j, body = report(server)
    assert.equals(2, j.converted)
    assert.truthy(body:find('"JPY": 9800}', 1, true), body)
    assert.equals(2, conversions_metric(server))
  end)

  it("keeps amounts exact and filters by time and variant", function()
    local server = helpers.start { plugin = plugin() }
    local at = notified(server, "v-a", { "ann@example.com" })
    notified(server, "v-b", { "ann@example.com" })
    assert.is_true(record(server, { order_id = "o", email = "ann@example.com",
      currency = "EUR", created_at = iso(at + DAY), items = {
        { variant_id = "v-a", amount = "0.10" },
        { variant_id = "v-a", amount = "0.20" },
        { variant_id = "v-b", amount = 19.99 },
      } }).ok)
    local j, body = report(server)
    assert.equals(2, j.converted)
    assert.truthy(body:find('"EUR": 20.29', 1, true), body)
    j, body = report(server, { variant_id = "v-a" })
    assert.equals(1, j.notified)
    assert.truthy(body:find('"EUR": 0.30', 1, true), body)
    assert.equals(0, report(server, { since = iso(at + HOUR) }).notified)
    assert.equals(0, report(server, { ["until"] = "2000-01-01" }).notified)
    assert.equals(2, report(server, { since = "2000-01-01T00:00:00+01:00",
      ["until"] = iso(at + DAY) }).notified)
    helpers.assert_error(helpers.admin(server, "GET",
      "/admin/reports/conversions?since=yesterday"), 400, "invalid_data")
    helpers.assert_error(helpers.request(server, "GET",
      "/admin/reports/conversions"), 401, "unauthorized")
    -- Forgetting the email forgets its conversions.
    helpers.assert_status(helpers.admin(server, "DELETE",
      "/admin/restock-notifications?email=ann%40example.com"), 200)
    j = report(server)
    assert.equals(0, j.notified)
    assert.same({}, j.revenue)
  end)

  it("refuses orders it cannot read, naming the field", function()
    local server = helpers.start { plugin = plugin() }
    for _, c in ipairs {
      { { email = "a@example.com", currency = "EUR", items = {} }, "order_id" },
      { { order_id = "x", items = {} }, "currency" },
      { { order_id = "x", currency = "EURO", items = {} }, "currency" },
      { { order_id = "x", currency = "EUR", email = "not-an-email" }, "email" },
      { { order_id = "x", currency = "EUR", created_at = "soon" },
        "created_at" },
      { { order_id = "x", currency = "EUR", items = { { amount = "1" } } },
        "items[0]: variant_id" },
      { { order_id = "x", currency = "EUR", items = { { variant_id = "v",
        amount = "1.2345678" } } }, "items[0]: amount" },
      { { order_id = "x", currency = "EUR", items = { { variant_id = "v",
        amount = "-3" } } }, "items[0]: amount" },
      { { order_id = "x", currency = "EUR", total = "3" }, "unknown field" },
    } do
      local r = record(server, c[1])
      assert.is_false(r.ok, cjson.encode(c[1]))
      assert.truthy(r.err:find(c[2], 1, true), r.err)
    end
    -- Nothing was recorded: "x" is still a new order.
    assert.is_true(record(server, { order_id = "x", currency = "EUR" }).ok)
  end)
end)
