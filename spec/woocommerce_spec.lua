-- scripts/woocommerce.lua end to end (contract section 6): webhooks in
-- WooCommerce's documented formats (spec/support/shops.lua says where each
-- comes from), signed as WooCommerce signs them, sent to the real server;
-- and its optional poll of the REST API, against a fake shop.
local cjson = require "cjson"
local fake_http = require "spec.support.fake_http"
local fake_shop = require "spec.support.fake_shop"
local helpers = require "spec.support.helpers"
local outbound = require "spec.support.outbound"
local shops = require "spec.support.shops"

local SECRET = "wc-webhook-secret-0123456789abcdef"
local RESTOCKED = "restock-notification.restocked"

local function plugin(extra)
  return 'local restock = require "restock"\n'
    .. "restock.options {}\n"
    .. 'require("woocommerce").setup { secret = "' .. SECRET .. '"'
    .. (extra or "") .. " }\n"
end

local function send(server, topic, payload, opts)
  return shops.woocommerce(server, SECRET, topic, payload, opts)
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

local function active(server, id)
  local res = helpers.admin(server, "GET", "/admin/restock-notifications"
    .. helpers.query { variant_id = id })
  local emails = {}
  for _, s in ipairs(res.json.restock_notifications) do
    emails[#emails + 1] = s.email
  end
  return emails
end

-- A variable T-shirt (id 100) with a blue (101) and a red (102) variation.
local function variation(id, stock, extra)
  local p = { id = id, parent_id = 100, name = "T-shirt - "
    .. (id == 101 and "Blue" or "Red"), stock_quantity = stock,
    stock_status = stock > 0 and "instock" or "outofstock",
    attributes = { { id = 1, name = "Color",
      option = id == 101 and "Blue" or "Red" } } }
  for k, v in pairs(extra or {}) do
    p[k] = v
  end
  return shops.woo_product(p)
end

describe("scripts/woocommerce.lua", function()
  after_each(function()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  it("a variation's restock notifies that variation's subscribers only",
    function()
    local server = helpers.start { plugin = plugin() }
    -- The variable product itself holds no stock of its variations.
    helpers.assert_status(send(server, "product.updated", shops.woo_product {
      id = 100, type = "variable", name = "T-shirt", manage_stock = false,
      variations = { 101, 102 } }), 200)
    helpers.assert_status(send(server, "product.updated", variation(101, 0)),
      200)
    helpers.assert_status(send(server, "product.updated", variation(102, 0)),
      200)
    local blue = variant(server, 101)
    assert.truthy(blue, server:stderr())
    assert.equals("T-shirt - Blue", blue.title)
    assert.equals("100", blue.product_id)
    assert.equals(0, blue.quantity)
    assert.is_nil(variant(server, 100))
    outbound.subscribe(server, "101", "ann@example.com")
    outbound.subscribe(server, "102", "bob@example.com")

    helpers.assert_status(send(server, "product.updated", variation(101, 3)),
      200)
    local events = outbound.wait_events(server, RESTOCKED, "delivered", 1, 15)
    assert.equals(1, #events)
    assert.equals("101", events[1].data.variant_id)
    assert.same({ "ann@example.com" }, events[1].data.emails)
    assert.same({}, active(server, "101"))
    assert.same({ "bob@example.com" }, active(server, "102"))
    assert.equals(0, variant(server, 102).quantity)
  end)

  it("maps simple products' stock settings", function()
    local server = helpers.start { plugin = plugin() }
    for _, p in ipairs {
      { id = 201, manage_stock = true, stock_quantity = 4, backorders = "no" },
      { id = 202, manage_stock = true, stock_quantity = 0,
        backorders = "notify" },
      { id = 203, manage_stock = false, stock_status = "instock" },
      { id = 204, manage_stock = false, stock_status = "outofstock" },
      { id = 205, manage_stock = false, stock_status = "onbackorder" },
    } do
      helpers.assert_status(send(server, "product.created",
        shops.woo_product(p)), 200)
    end
    local v = variant(server, 201)
    assert.equals(4, v.quantity)
    assert.is_true(v.manage_inventory)
    assert.is_false(v.allow_backorder)
    assert.is_true(variant(server, 202).allow_backorder)
    assert.is_false(variant(server, 203).manage_inventory)
    v = variant(server, 204)
    assert.is_true(v.manage_inventory)
    assert.equals(0, v.quantity)
    assert.is_true(variant(server, 205).allow_backorder)
  end)

  it("answers the ping 200 and stores nothing", function()
    local server = helpers.start { plugin = plugin() }
    local res = helpers.request(server, "POST", "/hooks/woocommerce", {
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded",
        ["User-Agent"] = "WooCommerce/9.5.1 Hookshot (WordPress/6.7.1)" },
      body = "webhook_id=17" })
    helpers.assert_status(res, 200)
    assert.equals("0\n", sqlite(server.db, "SELECT count(*) FROM script_kv"))
    assert.equals("0\n", sqlite(server.db, "SELECT count(*) FROM variants"))
    -- Anything else unsigned is refused.
    res = helpers.request(server, "POST", "/hooks/woocommerce", {
      body = "webhook_id=17&stock_quantity=5" })
    helpers.assert_error(res, 401, "unauthorized")
  end)

  it("answers a wrong, missing or garbled signature 401 and stores nothing",
    function()
    local server = helpers.start { plugin = plugin() }
    local body = cjson.encode(shops.woo_product { id = 301,
      stock_quantity = 9 })
    for what, sig in pairs {
      wrong = shops.sign("not-the-webhook-secret-0123456789", body),
      missing = false,
      garbled = "%%%%",
      hex = string.rep("ab", 32),
    } do
      helpers.assert_error(send(server, "product.updated", nil,
        { body = body, signature = sig }), 401, "unauthorized", nil, what)
    end
    assert.is_nil(variant(server, 301))
    assert.equals("0\n", sqlite(server.db, "SELECT count(*) FROM script_kv"))
    helpers.assert_status(send(server, "product.updated", nil,
      { body = body }), 200)
    assert.equals(9, variant(server, 301).quantity)
  end)

  it("applies a repeated delivery once", function()
    local server = helpers.start { plugin = plugin() }
    local body = cjson.encode(shops.woo_product { id = 401,
      stock_quantity = 0 })
    local res = send(server, "product.updated", nil,
      { body = body, delivery = "d41d8cd98f00b204" })
    helpers.assert_status(res, 200)
    assert.is_false(res.json["repeat"])
    outbound.set_quantity(server, "401", 6)
    res = send(server, "product.updated", nil,
      { body = body, delivery = "d41d8cd98f00b204" })
    helpers.assert_status(res, 200)
    assert.is_true(res.json["repeat"])
    assert.equals(6, variant(server, 401).quantity)
    -- WooCommerce gives every delivery of a webhook within one second the
    -- same id: another product's update under that id is not a repeat.
    res = send(server, "product.updated", shops.woo_product { id = 402,
      stock_quantity = 2 }, { delivery = "d41d8cd98f00b204" })
    assert.is_false(res.json["repeat"])
    assert.equals(2, variant(server, 402).quantity)
  end)

  it("records order.created for the conversions report", function()
    local server = helpers.start { plugin = plugin() }
    send(server, "product.updated", variation(101, 0))
    outbound.subscribe(server, "101", "ann@example.com")
    send(server, "product.updated", variation(101, 1))
    outbound.wait_events(server, RESTOCKED, "delivered", 1, 15)
    local res = send(server, "order.created", shops.woo_order(727, "ann@example.com",
      "EUR", os.date("!%Y-%m-%dT%H:%M:%S", os.time() + 60), {
        { product_id = 100, variation_id = 101, quantity = 2, total = "21.98" },
        { product_id = 555, quantity = 1, total = "5.00" },
      }))
    helpers.assert_status(res, 200)
    res = helpers.admin(server, "GET", "/admin/reports/conversions")
    assert.equals(1, res.json.converted)
    assert.truthy(res.body:find('"EUR": 21.98', 1, true), res.body)
  end)

  it("polls the REST API for what a webhook missed", function()
    local shop = fake_shop.start { woocommerce = {
      auth = "ck_test:cs_test",
      products = {
        shops.woo_product { id = 501, stock_quantity = 0,
          date_modified_gmt = "2026-03-01T10:00:00" },
        shops.woo_product { id = 100, type = "variable", name = "T-shirt",
          manage_stock = false, variations = { 101, 102 },
          date_modified_gmt = "2026-03-01T10:05:00" },
      },
      variations = { ["100"] = { variation(101, 0), variation(102, 2) } },
    } }
    local server = helpers.start { plugin = plugin(', url = "' .. shop.url
      .. '", consumer_key = "ck_test", consumer_secret = "cs_test",'
      .. " poll_interval = 100") }
    assert.truthy(helpers.wait_for(function()
      local v = variant(server, 102)
      return v and v.quantity == 2
    end, 15), "the poll did not bring the variations\n" .. server:stderr())
    assert.equals("T-shirt - Blue", variant(server, 101).title)
    outbound.subscribe(server, "501", "cy@example.com")
    -- A stock change the webhook did not bring (restockd was down, say).
    shop:set_state { woocommerce = {
      auth = "ck_test:cs_test",
      products = { shops.woo_product { id = 501, stock_quantity = 8,
        date_modified_gmt = "2026-03-02T08:00:00" } },
      variations = {},
    } }
    local events = outbound.wait_events(server, RESTOCKED, "delivered", 1, 15)
    assert.same({ "cy@example.com" }, events[1].data.emails)
    -- Each poll asks for what changed since the last one it saw.
    local next_poll = helpers.wait_for(function()
      for _, r in ipairs(shop:requests()) do
        if r.query.modified_after == "2026-03-02T07:59:59.000Z" then
          return r
        end
      end
    end, 10)
    assert.truthy(next_poll, "no poll went on from the newest change")
    assert.equals("/wp-json/wc/v3/products", next_poll.path)
    assert.equals("true", next_poll.query.dates_are_gmt)
    assert.equals("Basic Y2tfdGVzdDpjc190ZXN0",
      next_poll.headers.authorization)
  end)
end)
