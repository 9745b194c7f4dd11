-- scripts/medusa.lua end to end (contract section 6): the poller against a
-- fake Medusa Admin API (spec/support/fake_shop.py) whose answers follow
-- Medusa's Admin API reference (docs.medusajs.com/api/admin: product
-- variants, inventory items with their location levels, orders with their
-- items, stock locations with their sales channels, publishable API keys;
-- v1's products and orders for version 1).
local fake_http = require "spec.support.fake_http"
local fake_shop = require "spec.support.fake_shop"
local helpers = require "spec.support.helpers"
local outbound = require "spec.support.outbound"

local RESTOCKED = "restock-notification.restocked"
local KEY = "sk_0123456789abcdef0123456789abcdef"

local function plugin(url, extra)
  return 'local restock = require "restock"\n'
    .. "restock.options {}\n"
    .. 'require("medusa").setup { url = "' .. url .. '", interval = 100'
    .. (extra or (', api_key = "' .. KEY .. '"')) .. " }\n"
end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S.000Z", t)
end

-- A Medusa v2 shop: a T-shirt (variant_01, inventory item iitem_01) stocked
-- in two warehouses, two sales channels, a publishable key, and `orders`.
local function v2_shop(levels, orders, extra_variants)
  local variants = {
    { id = "variant_01", title = "M", sku = "TS-M", product_id = "prod_01",
      manage_inventory = true, allow_backorder = false,
      created_at = "2026-02-01T10:00:00.000Z",
      updated_at = "2026-03-01T10:00:00.000Z",
      product = { id = "prod_01", title = "T-shirt" },
      inventory_items = { { inventory_item_id = "iitem_01",
        variant_id = "variant_01", required_quantity = 1 } } },
  }
  for _, v in ipairs(extra_variants or {}) do
    variants[#variants + 1] = v
  end
  return { medusa = {
    version = 2,
    api_key = KEY,
    stock_locations = {
      { id = "sloc_eu", name = "EU warehouse",
        sales_channels = { { id = "sc_web", name = "Webshop" } } },
      { id = "sloc_us", name = "US warehouse",
        sales_channels = { { id = "sc_web", name = "Webshop" },
          { id = "sc_app", name = "App" } } },
    },
    api_keys = { { id = "apk_01", token = "pk_0123webshop", type =
      "publishable", revoked_at = require("cjson").null,
      sales_channels = { { id = "sc_web", name = "Webshop" } } } },
    variants = variants,
    inventory_items = { { id = "iitem_01", sku = "TS-M", location_levels = {
      { id = "ilev_eu", inventory_item_id = "iitem_01", location_id = "sloc_eu",
        stocked_quantity = levels.eu or 0, reserved_quantity = 0,
        incoming_quantity = 0, available_quantity = levels.eu or 0 },
      { id = "ilev_us", inventory_item_id = "iitem_01", location_id = "sloc_us",
        stocked_quantity = levels.us or 0,
        reserved_quantity = levels.us_reserved or 0, incoming_quantity = 0,
        available_quantity = (levels.us or 0) - (levels.us_reserved or 0) },
    } } },
    orders = orders or {},
  } }
end

local function order(id, email, created_at, quantity, unit_price)
  return { id = id, display_id = 1, email = email, currency_code = "eur",
    status = "pending", created_at = created_at, updated_at = created_at,
    items = { { id = "item_" .. id, title = "T-shirt", variant_id = "variant_01",
      quantity = quantity, unit_price = unit_price,
      total = quantity * unit_price } } }
end

local function variant(server, id)
  local res = helpers.admin(server, "GET", "/admin/variants/" .. id)
  return res.status == 200 and res.json.variant or nil
end

-- One query's output, as the sqlite3 shell prints it (psql on
-- PostgreSQL).
local function sqlite(db, sql)
  return (helpers.sql(db, sql) or "") .. "\n"
end

describe("scripts/medusa.lua", function()
  after_each(function()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  it("picks up a stock change and an order, and resumes from its cursor "
    .. "after a restart", function()
    local shop = fake_shop.start(v2_shop { eu = 0, us = 2, us_reserved = 2 })
    local dir = helpers.tmpdir()
    local server = helpers.start { dir = dir, plugin = plugin(shop.url) }
    local v = helpers.wait_for(function() return variant(server,
      "variant_01") end, 15)
    assert.truthy(v, "the poller brought no variant\n" .. server:stderr())
    assert.equals("T-shirt - M", v.title)
    assert.equals("prod_01", v.product_id)
    assert.truthy(helpers.wait_for(function()
      local res = helpers.admin(server, "GET", "/admin/publishable-api-keys")
      return #res.json.publishable_api_keys == 1
    end, 15), server:stderr())
    -- Medusa's warehouses and channels are restockd's.
    local res = helpers.admin(server, "GET", "/admin/sales-channels")
    local channels = {}
    for _, c in ipairs(res.json.sales_channels) do
      channels[c.id] = c.location_ids
    end
    assert.same({ sc_web = { "sloc_eu", "sloc_us" }, sc_app = { "sloc_us" } },
      channels)
    assert.equals(0, variant(server, "variant_01").quantity)
    -- One shopper for any channel, one through the webshop's key.
    outbound.subscribe(server, "variant_01", "ann@example.com")
    helpers.assert_status(helpers.request(server, "POST",
      "/restock-notifications/variants/variant_01", {
        headers = { ["x-publishable-api-key"] = "pk_0123webshop" },
        json = { email = "bob@example.com" } }), 201)

    -- A stock change made in Medusa's inventory module.
    shop:set_state(v2_shop { eu = 3, us = 2, us_reserved = 2 })
    local events = outbound.wait_events(server, RESTOCKED, "delivered", 2, 15)
    local notified = {}
    for _, e in ipairs(events) do
      for _, email in ipairs(e.data.emails) do
        notified[#notified + 1] = email
      end
    end
    table.sort(notified)
    assert.same({ "ann@example.com", "bob@example.com" }, notified)
    assert.equals(3, variant(server, "variant_01").quantity)

    -- An order by a notified shopper.
    local t1 = iso(os.time() + 5)
    shop:set_state(v2_shop({ eu = 2, us = 2, us_reserved = 2 },
      { order("order_01", "ann@example.com", t1, 1, 25) }))
    -- The shop's state may change in the middle of a poll (its levels read
    -- before, its orders after): the order and the level can arrive one
    -- poll apart.
    local report = helpers.wait_for(function()
      local r = helpers.admin(server, "GET", "/admin/reports/conversions")
      return r.json.converted == 1
        and variant(server, "variant_01").quantity == 2 and r
    end, 15)
    assert.truthy(report, "the order or the stock change was not picked up "
      .. "(quantity " .. tostring(variant(server, "variant_01").quantity)
      .. ")\n" .. server:stderr())
    assert.truthy(report.body:find('"EUR": 25.00', 1, true), report.body)
    assert.equals(2, variant(server, "variant_01").quantity)

    -- restockd is down while the shop sells and restocks.
    server:stop()
    local t2 = iso(os.time() + 10)
    shop:set_state(v2_shop({ eu = 9, us = 2, us_reserved = 2 }, {
      order("order_01", "ann@example.com", t1, 1, 25),
      order("order_02", "bob@example.com", t2, 2, 25),
    }, { { id = "variant_02", title = "L", sku = "TS-L", product_id = "prod_01",
      manage_inventory = false, allow_backorder = false,
      updated_at = "2026-03-05T10:00:00.000Z",
      product = { id = "prod_01", title = "T-shirt" }, inventory_items = {} } }))
    local before = #shop:requests()
    server = helpers.start { dir = dir, no_migrate = true,
      plugin = plugin(shop.url) }
    assert.truthy(helpers.wait_for(function()
      local got = variant(server, "variant_01")
      return got and got.quantity == 9 and variant(server, "variant_02")
    end, 15), "the restarted poller missed what changed\n" .. server:stderr())
    assert.truthy(helpers.wait_for(function()
      return sqlite(server.db, "SELECT count(*) FROM shop_orders") == "2\n"
    end, 15), "the order placed while restockd was down was not recorded")
    -- It went on from its cursors, not from the start.
    local first_orders, first_variants
    for i = before + 1, #shop:requests() do
      local r = shop:requests()[i]
      if r.path == "/admin/orders" and not first_orders then
        first_orders = r
      elseif r.path == "/admin/product-variants" and r.query["updated_at[$gte]"]
        and not first_variants then
        first_variants = r
      end
    end
    assert.truthy(first_orders and first_variants)
    assert.equals(t1, first_orders.query["created_at[$gte]"])
    assert.equals("2026-03-01T10:00:00.000Z",
      first_variants.query["updated_at[$gte]"])
    assert.equals("Basic " .. require("spec.support.shops").base64(KEY .. ":"),
      first_orders.headers.authorization)
  end)

  it("speaks v1's Admin API where v2's paths are missing", function()
    local shop = fake_shop.start { medusa = {
      version = 1, token = "user-api-token-123",
      products = { { id = "prod_1", title = "Mug",
        updated_at = "2026-03-01T10:00:00.000Z", variants = {
          { id = "variant_1", title = "Blue", sku = "MUG-B",
            product_id = "prod_1", inventory_quantity = 0,
            manage_inventory = true, allow_backorder = false } } } },
      orders = {},
    } }
    local server = helpers.start { plugin = plugin(shop.url,
      ', token = "user-api-token-123"') }
    assert.truthy(helpers.wait_for(function() return variant(server,
      "variant_1") end, 15), server:stderr())
    assert.equals("Mug - Blue", variant(server, "variant_1").title)
    outbound.subscribe(server, "variant_1", "cy@example.com")
    shop:set_state { medusa = {
      version = 1, token = "user-api-token-123",
      products = { { id = "prod_1", title = "Mug",
        updated_at = "2026-03-02T10:00:00.000Z", variants = {
          { id = "variant_1", title = "Blue", sku = "MUG-B",
            product_id = "prod_1", inventory_quantity = 4,
            manage_inventory = true, allow_backorder = false } } } },
      orders = { { id = "order_1", email = "cy@example.com",
        currency_code = "usd", created_at = iso(os.time() + 5),
        -- v1 amounts are in the currency's smallest unit.
        items = { { variant_id = "variant_1", quantity = 2,
          unit_price = 1250 } } } },
    } }
    outbound.wait_events(server, RESTOCKED, "delivered", 1, 15)
    local report = helpers.wait_for(function()
      local r = helpers.admin(server, "GET", "/admin/reports/conversions")
      return r.json.converted == 1 and r
    end, 15)
    assert.truthy(report, server:stderr())
    assert.truthy(report.body:find('"USD": 25.00', 1, true), report.body)
    assert.truthy(server:stderr():find("speaks the Admin API of Medusa v1", 1,
      true))
  end)

  it("logs a refused key and keeps polling", function()
    local shop = fake_shop.start(v2_shop { eu = 0 })
    local server = helpers.start { plugin = plugin(shop.url,
      ', api_key = "sk_wrong"') }
    assert.truthy(helpers.wait_stderr(server,
      "periodic task medusa:poll failed: medusa: GET", 15))
    assert.truthy(server:stderr():find("answered 401", 1, true))
    local n = #shop:requests()
    assert.truthy(helpers.wait_for(function()
      return #shop:requests() > n + 1
    end, 10), "the poller stopped after a failure")
    assert.is_nil(variant(server, "variant_01"))
  end)
end)
