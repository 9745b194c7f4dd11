-- Channel-scoped subscriptions (contract sections 4 and 5): the store route
-- takes a sales channel from the body or from a publishable API key, refuses
-- unknown or uncovered channels and keys, and judges "sold out" by the
-- quantity of the subscription's own scope.
local helpers = require "spec.support.helpers"
local W = require "spec.support.warehouse"

describe("multi-warehouse subscribe", function()
  after_each(helpers.cleanup)

  local server
  before_each(function()
    server = W.start()
    W.two_regions(server)
    W.variants(server, "shirt")
    -- Stock only in the US: sold out in sc_eu, in stock in sc_us and overall.
    W.level(server, "shirt", "loc_eu", { stocked_quantity = 0 })
    W.level(server, "shirt", "loc_us", { stocked_quantity = 2 })
  end)

  describe("accepts", function()
    it("a channel from a key with one channel", function()
      W.subscribed(server, "shirt", "ann@example.com", { key = "pk_eu" },
        "sc_eu")
      assert.same({ "ann@example.com" },
        W.list(server, { variant_id = "shirt", sales_channel_id = "sc_eu" }))
    end)

    it("a channel named in the body", function()
      W.subscribed(server, "shirt", "ben@example.com", { channel = "sc_eu" },
        "sc_eu")
      assert.same({ "ben@example.com" },
        W.list(server, { sales_channel_id = "sc_eu" }))
      assert.same({}, W.list(server, { sales_channel_id = "sc_us" }))
    end)

    it("a body channel that the key covers", function()
      W.subscribed(server, "shirt", "cat@example.com",
        { key = "pk_eu", channel = "sc_eu" }, "sc_eu")
      W.subscribed(server, "shirt", "dan@example.com",
        { key = "pk_both", channel = "sc_eu" }, "sc_eu")
      assert.same({ "cat@example.com", "dan@example.com" },
        W.list(server, { sales_channel_id = "sc_eu" }))
    end)

    it("a channel in a form body", function()
      local res = helpers.request(server, "POST",
        "/restock-notifications/variants/shirt", {
          body = "email=fox%40example.com&sales_channel_id=sc_eu",
          headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } })
      helpers.assert_status(res, 201)
      assert.equals("sc_eu", res.json.restock_notification.sales_channel_id)
    end)

    it("the key header in any letter case", function()
      local res = helpers.request(server, "POST",
        "/restock-notifications/variants/shirt", {
          json = { email = "gil@example.com" },
          headers = { ["X-Publishable-API-Key"] = "pk_eu" } })
      helpers.assert_status(res, 201)
      assert.equals("sc_eu", res.json.restock_notification.sales_channel_id)
    end)

    it("the same email in several scopes, one row each", function()
      W.channel(server, "sc_eu2", { "loc_eu" })
      W.subscribed(server, "shirt", "hue@example.com", { channel = "sc_eu" },
        "sc_eu")
      W.subscribed(server, "shirt", "hue@example.com", { channel = "sc_eu2" },
        "sc_eu2")
      local emails, json = W.list(server, { variant_id = "shirt" })
      assert.same({ "hue@example.com", "hue@example.com" }, emails)
      assert.equals("sc_eu", json.restock_notifications[1].sales_channel_id)
      assert.equals("sc_eu2", json.restock_notifications[2].sales_channel_id)
    end)

    it("the same email once per scope, and a repeat stores nothing", function()
      W.subscribed(server, "shirt", "eve@example.com", { channel = "sc_eu" },
        "sc_eu")
      W.subscribed(server, "shirt", "eve@example.com", { key = "pk_eu" },
        "sc_eu")
      assert.same({ "eve@example.com" },
        W.list(server, { variant_id = "shirt", sales_channel_id = "sc_eu" }))
    end)
  end)

  describe("refuses with 400 invalid_data", function()
    local cases = {
      { "an unknown channel in the body", { channel = "sc_mars" } },
      { "an unknown key", { key = "pk_unknown" } },
      { "an unknown key with a known channel",
        { key = "pk_unknown", channel = "sc_eu" } },
      { "a channel the key does not cover",
        { key = "pk_eu", channel = "sc_us" } },
      { "an unknown channel with a key", { key = "pk_both", channel = "sc_x" } },
      { "a key with several channels and no channel in the body",
        { key = "pk_both" } },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        local res = W.subscribe(server, "shirt", "fay@example.com", case[2])
        helpers.assert_error(res, 400, "invalid_data")
        assert.same({}, W.list(server, { variant_id = "shirt" }))
      end)
    end

    it("a key whose channels were all removed", function()
      W.key(server, "pk_eu", {})
      local res = W.subscribe(server, "shirt", "gus@example.com",
        { key = "pk_eu" })
      helpers.assert_error(res, 400, "invalid_data")
      assert.same({}, W.list(server, { variant_id = "shirt" }))
    end)
  end)

  describe("judges stock in the subscription's scope", function()
    it("refuses the US channel and unscoped when only the US has stock",
      function()
        W.refused_in_stock(server, "shirt", "hal@example.com",
          { channel = "sc_us" })
        W.refused_in_stock(server, "shirt", "hal@example.com",
          { key = "pk_both", channel = "sc_us" })
        W.refused_in_stock(server, "shirt", "hal@example.com")
        W.subscribed(server, "shirt", "hal@example.com", { channel = "sc_eu" },
          "sc_eu")
        assert.same({ "hal@example.com" }, W.list(server, {
          variant_id = "shirt" }))
      end)

    it("counts reserved stock as unavailable", function()
      W.level(server, "shirt", "loc_us", { reserved_quantity = 2 })
      W.subscribed(server, "shirt", "ivy@example.com", { channel = "sc_us" },
        "sc_us")
      W.subscribed(server, "shirt", "ivy@example.com", nil, nil)
    end)

    it("follows a channel's locations when they change", function()
      -- sc_eu now sells from the US too: in stock there.
      W.channel(server, "sc_eu", { "loc_eu", "loc_us" })
      W.refused_in_stock(server, "shirt", "jo@example.com", { key = "pk_eu" })
      -- And back to the EU only: sold out again.
      W.channel(server, "sc_eu", { "loc_eu" })
      W.subscribed(server, "shirt", "jo@example.com", { key = "pk_eu" },
        "sc_eu")
      -- A channel with no locations has nothing to sell.
      W.channel(server, "sc_us", {})
      W.subscribed(server, "shirt", "jo@example.com", { channel = "sc_us" },
        "sc_us")
    end)

    it("follows a key's channels when they change", function()
      W.key(server, "pk_eu", { "sc_us" })
      W.refused_in_stock(server, "shirt", "kim@example.com", { key = "pk_eu" })
      local res = W.subscribe(server, "shirt", "kim@example.com",
        { key = "pk_eu", channel = "sc_eu" })
      helpers.assert_error(res, 400, "invalid_data")
    end)

    it("still answers 404 for an unknown variant with a channel", function()
      local res = W.subscribe(server, "nope", "lee@example.com",
        { channel = "sc_eu" })
      helpers.assert_error(res, 404, "not_found",
        "Variant with id: nope was not found")
    end)
  end)
end)
