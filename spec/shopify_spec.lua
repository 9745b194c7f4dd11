-- scripts/shopify.lua end to end (contract section 6): webhooks in Shopify's
-- documented formats (spec/support/shops.lua says where each comes from),
-- signed as Shopify signs them, sent to the real server.
local helpers = require "spec.support.helpers"
local outbound = require "spec.support.outbound"
local shops = require "spec.support.shops"

local SECRET = "shpss_0123456789abcdef0123456789abcdef"
local RESTOCKED = "restock-notification.restocked"

local PLUGIN = 'local restock = require "restock"\n'
  .. "restock.options {}\n"
  .. 'require("shopify").setup { secret = "' .. SECRET .. '" }\n'

local PRODUCT, VARIANT, ITEM, LOCATION = 632910392, 808950810, 39072856,
  487838322

local function send(server, topic, payload, opts)
  return shops.shopify(server, SECRET, topic, payload, opts)
end

local function variant(server, id)
  local res = helpers.admin(server, "GET", "/admin/variants/" .. id)
  return res.status == 200 and res.json.variant or nil
end

local function wait_variant(server, id, pred)
  local v = helpers.wait_for(function()
    local got = variant(server, id)
    return got and (not pred or pred(got)) and got
  end, 15)
  assert.truthy(v, "variant " .. id .. " never got there\n" .. server:stderr())
  return v
end

-- One query's output, as the sqlite3 shell prints it (psql on
-- PostgreSQL).
local function sqlite(db, sql)
  return (helpers.sql(db, sql) or "") .. "\n"
end

local function blue_shirt(quantity, updated_at)
  return shops.shopify_product(PRODUCT, "Blue shirt", {
    { id = VARIANT, inventory_item_id = ITEM, inventory_quantity = quantity,
      title = "M" },
    { id = VARIANT + 1, inventory_item_id = ITEM + 1, inventory_quantity = 0,
      title = "L", inventory_policy = "continue" },
    { id = VARIANT + 2, inventory_item_id = ITEM + 2, inventory_quantity = 0,
      title = "Gift wrap", inventory_management = false },
  }, updated_at)
end

describe("scripts/shopify.lua", function()
  after_each(helpers.cleanup)

  it("a products/update then an inventory_levels/update restocks and "
    .. "notifies", function()
    local server = helpers.start { plugin = PLUGIN }
    local res = send(server, "products/update", blue_shirt(0))
    helpers.assert_status(res, 200)
    local v = wait_variant(server, VARIANT)
    assert.equals("Blue shirt - M", v.title)
    assert.equals(tostring(PRODUCT), v.product_id)
    assert.equals(0, v.quantity)
    assert.is_true(v.manage_inventory)
    assert.is_false(v.allow_backorder)
    -- inventory_policy "continue": backorders; inventory_management null:
    -- not managed.
    assert.is_true(wait_variant(server, VARIANT + 1).allow_backorder)
    assert.is_false(wait_variant(server, VARIANT + 2).manage_inventory)

    outbound.subscribe(server, tostring(VARIANT), "ann@example.com")
    res = send(server, "inventory_levels/update",
      shops.shopify_level(ITEM, LOCATION, 5))
    helpers.assert_status(res, 200)
    local events = outbound.wait_events(server, RESTOCKED, "delivered", 1, 15)
    assert.equals(tostring(VARIANT), events[1].data.variant_id)
    assert.same({ "ann@example.com" }, events[1].data.emails)
    v = wait_variant(server, VARIANT)
    assert.equals(5, v.quantity)
    -- The Shopify location is a stock location, with the variant's level.
    res = helpers.admin(server, "GET", "/admin/inventory-levels?variant_id="
      .. VARIANT)
    helpers.assert_status(res, 200)
    assert.equals(1, #res.json.inventory_levels)
    assert.equals(tostring(LOCATION), res.json.inventory_levels[1].location_id)
    assert.equals(5, res.json.inventory_levels[1].stocked_quantity)
    -- An oversold level (negative available) is a level below zero.
    send(server, "inventory_levels/update", shops.shopify_level(ITEM,
      LOCATION + 1, -2))
    wait_variant(server, VARIANT, function(got) return got.quantity == 3 end)
  end)

  it("answers a wrong, missing or garbled signature 401 and stores nothing",
    function()
    local server = helpers.start { plugin = PLUGIN }
    local payload = blue_shirt(3)
    local body = require("cjson").encode(payload)
    local other = shops.sign(SECRET, body .. " ")
    local short = require("spec.support.shops").sign(SECRET, body)
      :sub(1, 40) .. "===="
    for what, sig in pairs {
      wrong_secret = shops.sign("another-secret-entirely-0123456789", body),
      other_body = other,
      missing = false,
      garbled = "this is not base64!",
      truncated = short,
      empty = "",
    } do
      local res = send(server, "products/update", payload,
        { body = body, signature = sig })
      helpers.assert_error(res, 401, "unauthorized")
      assert.truthy(res.json.message:find("signature", 1, true), what)
    end
    assert.is_nil(variant(server, VARIANT))
    assert.equals(0, #outbound.events(server, "shopify.webhook"))
    assert.equals("0\n", sqlite(server.db, "SELECT count(*) FROM script_kv"))
    -- Signed right, but not JSON: refused, nothing queued.
    local res = send(server, "products/update", nil, { body = "{not json" })
    helpers.assert_error(res, 400, "invalid_data")
    assert.equals(0, #outbound.events(server, "shopify.webhook"))
    -- And the same webhook signed right is taken.
    helpers.assert_status(send(server, "products/update", payload,
      { body = body }), 200)
    wait_variant(server, VARIANT)
  end)

  it("applies a webhook repeated with the same id once", function()
    local server = helpers.start { plugin = PLUGIN }
    local payload = blue_shirt(0)
    local res = send(server, "products/update", payload, { id = "wh-1" })
    helpers.assert_status(res, 200)
    assert.is_false(res.json["repeat"])
    wait_variant(server, VARIANT)
    outbound.wait_events(server, "shopify.webhook", "delivered", 1, 15)
    -- The stock moves on; Shopify then delivers the old webhook again.
    outbound.set_quantity(server, tostring(VARIANT), 7)
    res = send(server, "products/update", payload, { id = "wh-1" })
    helpers.assert_status(res, 200)
    assert.is_true(res.json["repeat"])
    assert.equals(1, #outbound.events(server, "shopify.webhook"))
    assert.equals(7, variant(server, VARIANT).quantity)
    -- A new webhook id is a new delivery.
    res = send(server, "products/update", blue_shirt(2,
      "2026-03-01T11:00:00-05:00"), { id = "wh-2" })
    assert.is_false(res.json["repeat"])
    wait_variant(server, VARIANT, function(v) return v.quantity == 2 end)
  end)

  it("learns the level of an item whose product comes later", function()
    local server = helpers.start { plugin = PLUGIN }
    outbound.sold_out(server, tostring(VARIANT))
    outbound.subscribe(server, tostring(VARIANT), "bob@example.com")
    -- Shopify does not order its webhooks: the level arrives first, is
    -- queued, and applies once the product has said which variant it is.
    helpers.assert_status(send(server, "inventory_levels/update",
      shops.shopify_level(ITEM, LOCATION, 4)), 200)
    helpers.assert_status(send(server, "products/update", blue_shirt(0)), 200)
    local events = outbound.wait_events(server, RESTOCKED, "delivered", 1, 20)
    assert.same({ "bob@example.com" }, events[1].data.emails)
    assert.equals(4, variant(server, VARIANT).quantity)
    -- An older update, delivered late, is not applied over a newer one.
    send(server, "inventory_levels/update", shops.shopify_level(ITEM, LOCATION,
      0, "2026-03-01T09:30:00-05:00"))
    outbound.wait_events(server, "shopify.webhook", "delivered", 3, 15)
    assert.equals(4, variant(server, VARIANT).quantity)
  end)

  it("records orders/create for the conversions report", function()
    local server = helpers.start { plugin = PLUGIN }
    send(server, "products/update", blue_shirt(0))
    wait_variant(server, VARIANT)
    outbound.subscribe(server, tostring(VARIANT), "ann@example.com")
    send(server, "inventory_levels/update", shops.shopify_level(ITEM, LOCATION,
      2))
    outbound.wait_events(server, RESTOCKED, "delivered", 1, 15)
    local order = shops.shopify_order(450789469, "Ann@example.com", "USD",
      os.date("!%Y-%m-%dT%H:%M:%S+00:00", os.time() + 60), {
        { variant_id = VARIANT, quantity = 2, price = "49.99",
          total_discount = "5.00" },
        { variant_id = require("cjson").null, quantity = 1, price = "3.00" },
      })
    helpers.assert_status(send(server, "orders/create", order), 200)
    local report = helpers.wait_for(function()
      local res = helpers.admin(server, "GET", "/admin/reports/conversions")
      return res.json.converted == 1 and res
    end, 15)
    assert.truthy(report, "the order did not convert\n" .. server:stderr())
    assert.truthy(report.body:find('"USD": 94.98', 1, true), report.body)
    -- The same order again (another webhook id: a second subscription, or
    -- orders/paid set up too) is counted once.
    send(server, "orders/create", order)
    outbound.wait_events(server, "shopify.webhook", "delivered", 4, 15)
    local res = helpers.admin(server, "GET", "/admin/reports/conversions")
    assert.equals(1, res.json.converted)
  end)

  it("refuses to load without a secret", function()
    local dir = helpers.tmpdir()
    local path = dir .. "/plugin.lua"
    helpers.write_file(path, 'require("shopify").setup {}\n')
    local rc, _, stderr = helpers.run({ "check", "--config", path },
      { SHOPIFY_API_SECRET = false })
    assert.equals(2, rc)
    assert.truthy(stderr:find("SHOPIFY_API_SECRET", 1, true), stderr)
  end)
end)
