-- GET /admin/reports/demand (contract section 5): the variants with active
-- subscriptions, most waiting first, each with its title, sku, quantity,
-- waiting, oldest_waiting_since, notified and converted, optionally within
-- one sales channel, paginated. The counts are kept by migration 011's
-- triggers: every write that adds or ends a subscription moves them.
local helpers = require "spec.support.helpers"

local admin = helpers.admin

local function variant(server, id, fields)
  fields = fields or {}
  fields.id = id
  helpers.assert_status(admin(server, "POST", "/admin/variants", fields), 200)
end

local function subscribe(server, id, email, channel)
  local res = helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(id), { json = { email = email, sales_channel_id = channel } })
  helpers.assert_status(res, 201)
  return res.json.restock_notification
end

local function demand(server, query)
  local res = admin(server, "GET", "/admin/reports/demand"
    .. helpers.query(query or {}))
  helpers.assert_status(res, 200)
  return res.json
end

local function ids(report)
  local out = {}
  for _, v in ipairs(report.variants) do
    out[#out + 1] = v.variant_id .. "=" .. string.format("%d", v.waiting)
  end
  return table.concat(out, " ")
end

describe("the demand report", function()
  after_each(helpers.cleanup)

  it("ranks the variants by shoppers waiting, with their fields", function()
    local server = helpers.start()
    variant(server, "v-few", { title = "Socks", sku = "SO-1" })
    variant(server, "v-many", { title = "Shirt", sku = "SH-1" })
    variant(server, "v-some", { title = "Hat" })
    variant(server, "v-none", { title = "Scarf" })
    local first = subscribe(server, "v-many", "a@example.com")
    for _, e in ipairs({ "b", "c", "d" }) do
      subscribe(server, "v-many", e .. "@example.com")
    end
    subscribe(server, "v-some", "a@example.com")
    subscribe(server, "v-some", "b@example.com")
    subscribe(server, "v-few", "z@example.com")
    -- Subscribing again is no new shopper.
    subscribe(server, "v-few", "z@example.com")

    local r = demand(server)
    assert.equals(3, r.count)
    assert.equals("v-many=4 v-some=2 v-few=1", ids(r))
    local top = r.variants[1]
    assert.equals("Shirt", top.title)
    assert.equals("SH-1", top.sku)
    assert.equals(0, top.quantity)
    assert.equals(first.created_at, top.oldest_waiting_since)
    assert.equals(0, top.notified)
    assert.equals(0, top.converted)
    assert.equals(helpers.null, r.variants[2].sku)

    -- Pages.
    r = demand(server, { limit = 1, offset = 1 })
    assert.equals(3, r.count)
    assert.equals("v-some=2", ids(r))
    r = demand(server, { limit = 2, offset = 2 })
    assert.equals("v-few=1", ids(r))
    helpers.assert_error(admin(server, "GET", "/admin/reports/demand?limit=1001"),
      400, "invalid_data")
    helpers.assert_error(admin(server, "GET", "/admin/reports/demand?offset=-1"),
      400, "invalid_data")
    helpers.assert_error(helpers.request(server, "GET", "/admin/reports/demand"),
      401, "unauthorized")
  end)

  it("follows every write that ends a subscription", function()
    local server = helpers.start()
    variant(server, "v1", { title = "One" })
    variant(server, "v2", { title = "Two" })
    variant(server, "v3", { title = "Three" })
    for _, e in ipairs({ "a", "b", "c" }) do
      subscribe(server, "v1", e .. "@example.com")
      subscribe(server, "v2", e .. "@example.com")
    end
    subscribe(server, "v3", "a@example.com")
    assert.equals("v1=3 v2=3 v3=1", ids(demand(server)))

    -- Erasing an email takes it out of every count.
    helpers.assert_status(admin(server, "DELETE",
      "/admin/restock-notifications?email=a@example.com"), 200)
    assert.equals("v1=2 v2=2", ids(demand(server)))

    -- A restock notifies v1's shoppers: v1 leaves, its notified count
    -- stays for the history.
    helpers.assert_status(admin(server, "POST", "/admin/variants/v1",
      { inventory_quantity = 5 }), 200)
    assert.truthy(helpers.wait_for(function()
      return ids(demand(server)) == "v2=2"
    end), ids(demand(server)))
    -- Back to sold out, one shopper comes back: two notified before.
    helpers.assert_status(admin(server, "POST", "/admin/variants/v1",
      { inventory_quantity = 0 }), 200)
    subscribe(server, "v1", "b@example.com")
    local r = demand(server)
    assert.equals("v2=2 v1=1", ids(r))
    assert.equals(2, r.variants[2].notified)

    -- Deleting a variant cancels its subscriptions.
    helpers.assert_status(admin(server, "DELETE", "/admin/variants/v2"), 200)
    r = demand(server)
    assert.equals("v1=1", ids(r))
    assert.equals(1, r.count)
  end)

  it("keeps the counts of a restock taken in chunks, and of the shoppers "
    .. "it leaves waiting", function()
    -- batch_size 2: five shoppers who want one or two move in three chunks;
    -- two who want ten stay, waiting.
    local server = helpers.start({ plugin = [[
local restock = require "restock"
restock.options { batch_size = 2 }
]] })
    variant(server, "v1", { title = "One" })
    variant(server, "v2", { title = "Two" })
    for i = 1, 7 do
      local res = helpers.request(server, "POST",
        "/restock-notifications/variants/v1", { json = {
          email = "s" .. i .. "@example.com", quantity = i <= 5 and 1 or 10 } })
      helpers.assert_status(res, 201)
    end
    subscribe(server, "v2", "x@example.com")
    assert.equals("v1=7 v2=1", ids(demand(server)))
    helpers.assert_status(admin(server, "POST", "/admin/variants/v1",
      { inventory_quantity = 5 }), 200)
    local r = helpers.wait_for(function()
      local d = demand(server)
      return ids(d) == "v1=2 v2=1" and d.variants[1].notified == 5 and d
    end)
    assert.truthy(r, ids(demand(server)))
    assert.equals(0, r.variants[2].notified)
    -- The counts agree with the subscriptions themselves.
    local res = admin(server, "GET",
      "/admin/restock-notifications?variant_id=v1")
    assert.equals(2, res.json.count)
    res = admin(server, "GET",
      "/admin/restock-notifications?variant_id=v1&status=notified")
    assert.equals(5, res.json.count)
  end)

  it("keeps the counts of chunks large enough to move without row "
    .. "triggers, and counts the writes after them", function()
    -- batch_size 150: a chunk of 150 and one of 50. On SQLite a chunk of
    -- 128 or more turns the per-row triggers off while its rows move (the
    -- take counts them itself); the smaller one has them skip.
    local server = helpers.start({ plugin = [[
local restock = require "restock"
restock.options { batch_size = 150 }
]] })
    variant(server, "v1", { title = "One" })
    variant(server, "v2", { title = "Two" })
    for i = 1, 200 do
      subscribe(server, "v1", "s" .. i .. "@example.com")
    end
    subscribe(server, "v2", "x@example.com")
    assert.equals("v1=200 v2=1", ids(demand(server)))
    helpers.assert_status(admin(server, "POST", "/admin/variants/v1",
      { inventory_quantity = 5 }), 200)
    assert.truthy(helpers.wait_for(function()
      return ids(demand(server)) == "v2=1"
    end), ids(demand(server)))
    local res = admin(server, "GET",
      "/admin/restock-notifications?variant_id=v1&status=notified")
    assert.equals(200, res.json.count)
    -- The triggers count again: a shopper back on the sold-out variant,
    -- then one erased.
    helpers.assert_status(admin(server, "POST", "/admin/variants/v1",
      { inventory_quantity = 0 }), 200)
    subscribe(server, "v1", "s1@example.com")
    local r = demand(server)
    assert.equals("v1=1 v2=1", ids(r))
    assert.equals(200, r.variants[1].notified)
    helpers.assert_status(admin(server, "DELETE",
      "/admin/restock-notifications?email=x@example.com"), 200)
    assert.equals("v1=1", ids(demand(server)))
  end)

  it("counts a double opt-in subscription once it is confirmed", function()
    local server = helpers.start({ plugin = [[
local restock = require "restock"
restock.options { double_opt_in = true }
]] })
    variant(server, "v1", { title = "One" })
    local sub = subscribe(server, "v1", "a@example.com")
    assert.equals("pending", sub.status)
    local r = demand(server)
    assert.equals(0, r.count)
    assert.same({}, r.variants)
    local events = helpers.events(server,
      { name = "restock-notification.confirmation_requested" })
    local token = events.events[1].data.confirm_token
    helpers.assert_status(helpers.request(server, "GET",
      "/restock-notifications/confirm?token=" .. helpers.urlencode(token)), 200)
    assert.equals("v1=1", ids(demand(server)))
  end)

  it("filters by sales channel, with the channel's quantity", function()
    local server = helpers.start()
    local function post(path, body)
      helpers.assert_status(admin(server, "POST", path, body), 200)
    end
    post("/admin/stock-locations", { id = "eu-wh", name = "EU" })
    post("/admin/stock-locations", { id = "us-wh", name = "US" })
    post("/admin/sales-channels", { id = "eu", name = "EU shop", location_ids = { "eu-wh" } })
    post("/admin/sales-channels", { id = "us", name = "US shop", location_ids = { "us-wh" } })
    variant(server, "tee", { title = "Tee" })
    variant(server, "cap", { title = "Cap" })
    post("/admin/inventory-levels", { variant_id = "tee", location_id = "us-wh",
      stocked_quantity = 3, reserved_quantity = 0 })
    post("/admin/inventory-levels", { variant_id = "tee", location_id = "eu-wh",
      stocked_quantity = 0, reserved_quantity = 0 })
    subscribe(server, "tee", "a@example.com", "eu")
    subscribe(server, "tee", "b@example.com", "eu")
    subscribe(server, "cap", "a@example.com", "eu")
    subscribe(server, "cap", "b@example.com", "us")
    subscribe(server, "cap", "c@example.com", "us")
    subscribe(server, "cap", "d@example.com")

    local all = demand(server)
    assert.equals("cap=4 tee=2", ids(all))
    assert.equals(3, all.variants[2].quantity) -- every location
    local eu = demand(server, { sales_channel_id = "eu" })
    assert.equals("tee=2 cap=1", ids(eu))
    assert.equals(2, eu.count)
    assert.equals(0, eu.variants[1].quantity) -- the EU warehouse only
    local us = demand(server, { sales_channel_id = "us" })
    assert.equals("cap=2", ids(us))
    local none = demand(server, { sales_channel_id = "nowhere" })
    assert.equals(0, none.count)
    assert.same({}, none.variants)
  end)
end)
