-- The multi-warehouse admin routes (contract section 5): stock locations,
-- sales channels, inventory levels and publishable keys, all upserts; and
-- the stock rule of section 4: a variant with levels has quantity and
-- inventory_quantity equal to the sum of (stocked - reserved) over them,
-- and setting its inventory_quantity directly answers 400.
local helpers = require "spec.support.helpers"
local W = require "spec.support.warehouse"

local admin = helpers.admin

-- Asserts an ISO-8601 UTC timestamp with milliseconds.
local function assert_time(s, what)
  assert(type(s) == "string" and s:match(
    "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"),
    string.format("%s: expected a timestamp, got %s", what, tostring(s)))
end

describe("multi-warehouse admin routes", function()
  after_each(helpers.cleanup)

  local server
  before_each(function()
    server = W.start()
  end)

  it("all need the admin token", function()
    local routes = {
      { "/admin/stock-locations", { id = "loc_a" } },
      { "/admin/sales-channels", { id = "sc_a" } },
      { "/admin/inventory-levels", { variant_id = "v", location_id = "l" } },
      { "/admin/publishable-api-keys", { id = "pk_a" } },
      { "/admin/inventory/batch", { updates = { { variant_id = "v",
        inventory_quantity = 1 } } } },
    }
    for _, r in ipairs(routes) do
      local res = helpers.request(server, "POST", r[1], { json = r[2] })
      helpers.assert_error(res, 401, "unauthorized")
      res = helpers.request(server, "POST", r[1], { json = r[2],
        headers = { Authorization = "Bearer wrong-token" } })
      helpers.assert_error(res, 401, "unauthorized")
    end
  end)

  describe("POST /admin/stock-locations", function()
    it("creates a location and answers it", function()
      local loc = W.location(server, "loc_eu", "Europe")
      assert.equals("loc_eu", loc.id)
      assert.equals("Europe", loc.name)
      assert_time(loc.created_at, "created_at")
      assert_time(loc.updated_at, "updated_at")
    end)

    it("generates an sloc_ id when none is given", function()
      local a = W.post(server, "/admin/stock-locations",
        { name = "Depot" }).stock_location
      local b = W.post(server, "/admin/stock-locations",
        { name = "Depot" }).stock_location
      assert.truthy(a.id:match("^sloc_.+"), a.id)
      assert.truthy(b.id:match("^sloc_.+"), b.id)
      assert.are_not.equals(a.id, b.id)
      assert.equals("Depot", a.name)
      -- The generated id is usable.
      local sc = W.channel(server, "sc_x", { a.id })
      assert.same({ a.id }, sc.location_ids)
    end)

    it("updates a location posted again with its id", function()
      local first = W.location(server, "loc_eu", "Europe")
      local second = W.location(server, "loc_eu", "Europe (Berlin)")
      assert.equals("loc_eu", second.id)
      assert.equals("Europe (Berlin)", second.name)
      assert.equals(first.created_at, second.created_at)
    end)

    it("refuses a body that is not a JSON object", function()
      helpers.assert_error(admin(server, "POST", "/admin/stock-locations",
        "{not json"), 400, "invalid_data")
      helpers.assert_error(admin(server, "POST", "/admin/stock-locations",
        "[1, 2]"), 400, "invalid_data")
    end)
  end)

  describe("POST /admin/sales-channels", function()
    before_each(function()
      W.location(server, "loc_eu")
      W.location(server, "loc_us")
      W.location(server, "loc_asia")
    end)

    it("creates a channel with its locations, sorted", function()
      local sc = W.channel(server, "sc_world", { "loc_us", "loc_asia",
        "loc_eu" }, "World")
      assert.equals("sc_world", sc.id)
      assert.equals("World", sc.name)
      assert.same({ "loc_asia", "loc_eu", "loc_us" }, sc.location_ids)
      assert_time(sc.created_at, "created_at")
      assert_time(sc.updated_at, "updated_at")
    end)

    it("gives a channel posted again exactly the new list", function()
      W.channel(server, "sc", { "loc_eu", "loc_us" })
      local sc = W.channel(server, "sc", { "loc_asia" })
      assert.same({ "loc_asia" }, sc.location_ids)
      sc = W.channel(server, "sc", { "loc_us", "loc_eu" })
      assert.same({ "loc_eu", "loc_us" }, sc.location_ids)
      sc = W.channel(server, "sc", {})
      assert.same({}, sc.location_ids)
      sc = W.channel(server, "sc", { "loc_eu" }, "Renamed")
      assert.same({ "loc_eu" }, sc.location_ids)
      assert.equals("Renamed", sc.name)
    end)

    it("refuses an unknown location with 400 naming it", function()
      W.channel(server, "sc", { "loc_eu" })
      local res = admin(server, "POST", "/admin/sales-channels",
        { id = "sc", location_ids = { "loc_us", "loc_moon" } })
      helpers.assert_error(res, 400, "invalid_data")
      assert.truthy(res.json.message:find("loc_moon", 1, true),
        helpers.describe(res))
      -- Nothing of the refused post is stored: sc still sells from loc_eu
      -- only, so stock in loc_us leaves it sold out there.
      W.variants(server, "v")
      W.level(server, "v", "loc_us", { stocked_quantity = 1 })
      W.subscribed(server, "v", "ann@example.com", { channel = "sc" }, "sc")
      res = admin(server, "POST", "/admin/sales-channels",
        { id = "sc_new", location_ids = { "loc_moon" } })
      helpers.assert_error(res, 400, "invalid_data")
      -- sc_new was not created: a key cannot name it.
      helpers.assert_error(admin(server, "POST", "/admin/publishable-api-keys",
        { id = "pk", sales_channel_ids = { "sc_new" } }), 400, "invalid_data")
    end)

    it("refuses location_ids that are not a list of strings", function()
      for _, body in ipairs({ '{"id":"sc","location_ids":"loc_eu"}',
        '{"id":"sc","location_ids":[1]}', '{"id":"sc","location_ids":{}}' }) do
        helpers.assert_error(admin(server, "POST", "/admin/sales-channels",
          body), 400, "invalid_data")
      end
    end)
  end)

  describe("POST /admin/publishable-api-keys", function()
    before_each(function()
      W.location(server, "loc_eu")
      W.channel(server, "sc_eu", { "loc_eu" })
      W.channel(server, "sc_us", {})
      W.channel(server, "sc_asia", {})
    end)

    it("creates a key with its channels", function()
      local key = W.key(server, "pk_1", { "sc_us", "sc_eu" })
      assert.equals("pk_1", key.id)
      table.sort(key.sales_channel_ids)
      assert.same({ "sc_eu", "sc_us" }, key.sales_channel_ids)
    end)

    it("generates an id when none is given", function()
      local key = W.post(server, "/admin/publishable-api-keys",
        { sales_channel_ids = { "sc_eu" } }).publishable_api_key
      assert.equals("string", type(key.id))
      assert.truthy(#key.id > 0)
      assert.same({ "sc_eu" }, key.sales_channel_ids)
      -- The generated key works on the store route.
      W.variants(server, "v")
      W.subscribed(server, "v", "ann@example.com", { key = key.id }, "sc_eu")
    end)

    it("gives a key posted again exactly the new list", function()
      W.key(server, "pk_1", { "sc_eu", "sc_us" })
      local key = W.key(server, "pk_1", { "sc_asia" })
      assert.same({ "sc_asia" }, key.sales_channel_ids)
      key = W.key(server, "pk_1", { "sc_us" })
      assert.same({ "sc_us" }, key.sales_channel_ids)
      key = W.key(server, "pk_1", {})
      assert.same({}, key.sales_channel_ids)
    end)

    it("refuses an unknown channel with 400 naming it", function()
      W.key(server, "pk_1", { "sc_eu" })
      local res = admin(server, "POST", "/admin/publishable-api-keys",
        { id = "pk_1", sales_channel_ids = { "sc_us", "sc_nowhere" } })
      helpers.assert_error(res, 400, "invalid_data")
      assert.truthy(res.json.message:find("sc_nowhere", 1, true),
        helpers.describe(res))
      -- The key still covers exactly sc_eu.
      W.variants(server, "v")
      W.subscribed(server, "v", "ann@example.com", { key = "pk_1" }, "sc_eu")
    end)
  end)

  describe("POST /admin/inventory-levels", function()
    before_each(function()
      W.location(server, "loc_eu")
      W.location(server, "loc_us")
      W.variants(server, "v")
    end)

    it("creates a level and answers it with available_quantity", function()
      local level = W.level(server, "v", "loc_eu",
        { stocked_quantity = 7, reserved_quantity = 2 })
      assert.equals("v", level.variant_id)
      assert.equals("loc_eu", level.location_id)
      assert.equals(7, level.stocked_quantity)
      assert.equals(2, level.reserved_quantity)
      assert.equals(5, level.available_quantity)
      assert_time(level.created_at, "created_at")
      assert_time(level.updated_at, "updated_at")
    end)

    it("defaults a new level's quantities to 0 and keeps missing ones",
      function()
        local level = W.level(server, "v", "loc_eu")
        assert.equals(0, level.stocked_quantity)
        assert.equals(0, level.reserved_quantity)
        assert.equals(0, level.available_quantity)
        level = W.level(server, "v", "loc_eu", { stocked_quantity = 4 })
        assert.equals(4, level.stocked_quantity)
        assert.equals(0, level.reserved_quantity)
        level = W.level(server, "v", "loc_eu", { reserved_quantity = 1 })
        assert.equals(4, level.stocked_quantity)
        assert.equals(1, level.reserved_quantity)
        assert.equals(3, level.available_quantity)
        local again = W.level(server, "v", "loc_eu", { stocked_quantity = 9 })
        assert.equals(1, again.reserved_quantity)
        assert.equals(level.created_at, again.created_at)
      end)

    it("refuses an unknown variant or location", function()
      helpers.assert_error(admin(server, "POST", "/admin/inventory-levels",
        { variant_id = "ghost", location_id = "loc_eu",
          stocked_quantity = 1 }), 400, "invalid_data")
      helpers.assert_error(admin(server, "POST", "/admin/inventory-levels",
        { variant_id = "v", location_id = "loc_mars", stocked_quantity = 1 }),
        400, "invalid_data")
      -- Neither created a level: v has none and keeps its own quantity.
      local v = W.post(server, "/admin/variants/v",
        { inventory_quantity = 2 }).variant
      assert.equals(2, v.quantity)
    end)

    local bad = {
      { "a negative stocked_quantity", { stocked_quantity = -1 } },
      { "a negative reserved_quantity", { reserved_quantity = -1 } },
      { "a fractional quantity", { stocked_quantity = 2.5 } },
      { "a string quantity", { stocked_quantity = "3" } },
      { "a boolean quantity", { reserved_quantity = true } },
      { "a missing variant_id", { variant_id = false } },
      { "a missing location_id", { location_id = false } },
    }
    for _, case in ipairs(bad) do
      it("refuses " .. case[1] .. " with 400 invalid_data", function()
        local body = { variant_id = "v", location_id = "loc_eu" }
        for k, val in pairs(case[2]) do
          if val == false then
            body[k] = nil
          else
            body[k] = val
          end
        end
        helpers.assert_error(admin(server, "POST", "/admin/inventory-levels",
          body), 400, "invalid_data")
        -- Nothing was stored: v has no level and its quantity stays settable.
        local v = W.post(server, "/admin/variants/v",
          { inventory_quantity = 1 }).variant
        assert.equals(1, v.quantity)
      end)
    end
  end)

  describe("a variant with inventory levels", function()
    before_each(function()
      W.location(server, "loc_eu")
      W.location(server, "loc_us")
      W.location(server, "loc_depot")
      W.post(server, "/admin/variants", { variants = {
        { id = "v", product_id = "prod_1", inventory_quantity = 9 },
        { id = "w", inventory_quantity = 4 },
      } })
    end)

    it("keeps inventory_quantity equal to the sum of the levels", function()
      W.level(server, "v", "loc_eu", { stocked_quantity = 3 })
      local v = W.variant(server, "v")
      assert.equals(3, v.inventory_quantity)
      assert.equals(3, v.quantity)

      W.level(server, "v", "loc_us",
        { stocked_quantity = 5, reserved_quantity = 1 })
      v = W.variant(server, "v")
      assert.equals(7, v.inventory_quantity)
      assert.equals(7, v.quantity)

      W.level(server, "v", "loc_depot",
        { stocked_quantity = 1, reserved_quantity = 4 })
      v = W.variant(server, "v")
      assert.equals(4, v.inventory_quantity)
      assert.equals(4, v.quantity)

      W.level(server, "v", "loc_eu", { reserved_quantity = 3 })
      v = W.variant(server, "v")
      assert.equals(1, v.inventory_quantity)
      assert.equals(1, v.quantity)

      -- The bulk variants answer shows the same figures.
      local list = W.post(server, "/admin/variants",
        { id = "v", title = "Blue" }).variants
      assert.equals(1, list[1].inventory_quantity)
      assert.equals(1, list[1].quantity)
      assert.equals("Blue", list[1].title)

      -- w has no levels: its own inventory_quantity still counts.
      local w = W.variant(server, "w")
      assert.equals(4, w.quantity)
      assert.equals(4, w.inventory_quantity)
    end)

    it("refuses a direct inventory_quantity with 400 on every route",
      function()
        W.level(server, "v", "loc_eu", { stocked_quantity = 2 })
        local tries = {
          { "/admin/variants/v", { inventory_quantity = 10 } },
          { "/admin/variants", { id = "v", inventory_quantity = 10 } },
          { "/admin/variants", { variants = { { id = "v",
            inventory_quantity = 10 } } } },
          { "/admin/products/prod_1/variants/v", { inventory_quantity = 10 } },
          { "/admin/inventory/batch", { updates = { { variant_id = "v",
            inventory_quantity = 10 } } } },
        }
        for _, t in ipairs(tries) do
          local res = admin(server, "POST", t[1], t[2])
          helpers.assert_error(res, 400, "invalid_data")
        end
        local v = W.variant(server, "v")
        assert.equals(2, v.inventory_quantity)
        assert.equals(2, v.quantity)
      end)

    it("still takes its other fields", function()
      W.level(server, "v", "loc_eu", { stocked_quantity = 2 })
      local v = W.post(server, "/admin/variants/v",
        { title = "Red", sku = "RED-1", allow_backorder = false }).variant
      assert.equals("Red", v.title)
      assert.equals("RED-1", v.sku)
      assert.equals(2, v.inventory_quantity)
      assert.equals(2, v.quantity)
    end)
  end)
end)
