-- Channel-scoped restock checks (contract section 4): every change that can
-- raise a channel's quantity (an inventory level, a reservation released, a
-- location linked to a channel) schedules the variant's check, and at the
-- check each scope (unscoped, each channel) is judged on its own quantity.
-- Only the scopes above the threshold are notified; the others stay active.
local helpers = require "spec.support.helpers"
local W = require "spec.support.warehouse"

describe("multi-warehouse restock checks", function()
  after_each(helpers.cleanup)

  local server
  before_each(function()
    server = W.start()
    W.two_regions(server)
  end)

  describe("raising one location", function()
    before_each(function()
      W.variants(server, "shirt")
      W.level(server, "shirt", "loc_eu", { stocked_quantity = 0 })
      W.level(server, "shirt", "loc_us", { stocked_quantity = 0 })
      W.subscribed(server, "shirt", "eu1@example.com", { key = "pk_eu" },
        "sc_eu")
      W.subscribed(server, "shirt", "eu2@example.com", { channel = "sc_eu" },
        "sc_eu")
      W.subscribed(server, "shirt", "us1@example.com", { channel = "sc_us" },
        "sc_us")
      W.subscribed(server, "shirt", "any@example.com", nil, nil)
    end)

    it("fires that channel and the unscoped scope, not the other channel",
      function()
        W.level(server, "shirt", "loc_eu", { stocked_quantity = 3 })

        assert.same({ "eu1@example.com", "eu2@example.com" },
          W.wait_emails(server, "shirt", "sc_eu"))
        assert.same({ "any@example.com" },
          W.wait_emails(server, "shirt", nil))
        W.settle(server)
        assert.same({}, W.emails_for(server, "shirt", "sc_us"), W.dump(server))
        assert.equals(1, #W.events_for(server, "shirt", "sc_eu"))
        assert.equals(1, #W.events_for(server, "shirt", nil))

        -- The US subscriber is still active; the others are history.
        assert.same({ "us1@example.com" },
          W.list(server, { variant_id = "shirt" }))
        assert.same({ "us1@example.com" },
          W.list(server, { sales_channel_id = "sc_us" }))
        assert.same({}, W.list(server, { sales_channel_id = "sc_eu" }))
        assert.same({ "eu1@example.com", "eu2@example.com" }, W.list(server,
          { sales_channel_id = "sc_eu", status = "notified" }))
        local _, notified = W.list(server, { variant_id = "shirt",
          status = "notified" })
        assert.equals(3, notified.count)
        for _, n in ipairs(notified.restock_notifications) do
          assert.truthy(n.notified_at ~= nil and n.notified_at ~= helpers.null)
        end

        -- Raising the US fires the US subscriber, and only that.
        W.level(server, "shirt", "loc_us", { stocked_quantity = 2 })
        assert.same({ "us1@example.com" },
          W.wait_emails(server, "shirt", "sc_us"))
        W.settle(server)
        assert.equals(1, #W.events_for(server, "shirt", "sc_us"))
        assert.equals(1, #W.events_for(server, "shirt", "sc_eu"))
        assert.equals(1, #W.events_for(server, "shirt", nil))
        assert.same({}, W.list(server, { variant_id = "shirt" }))
        assert.equals(5, W.variant(server, "shirt").quantity)
      end)

    it("fires each scope once when both locations rise together", function()
      helpers.assert_status(helpers.admin(server, "POST",
        "/admin/inventory/batch", { updates = {
          { variant_id = "shirt", location_id = "loc_eu", stocked_quantity = 1 },
          { variant_id = "shirt", location_id = "loc_us", stocked_quantity = 1 },
        } }), 200)
      assert.same({ "eu1@example.com", "eu2@example.com" },
        W.wait_emails(server, "shirt", "sc_eu"))
      assert.same({ "us1@example.com" }, W.wait_emails(server, "shirt", "sc_us"))
      assert.same({ "any@example.com" }, W.wait_emails(server, "shirt", nil))
      W.settle(server)
      assert.equals(1, #W.events_for(server, "shirt", "sc_eu"), W.dump(server))
      assert.equals(1, #W.events_for(server, "shirt", "sc_us"), W.dump(server))
      assert.equals(1, #W.events_for(server, "shirt", nil), W.dump(server))
      assert.same({}, W.list(server, { variant_id = "shirt" }))
    end)

    it("fires every channel that sells from the raised location", function()
      W.channel(server, "sc_world", { "loc_eu", "loc_us" })
      W.subscribed(server, "shirt", "eu1@example.com", { channel = "sc_world" },
        "sc_world")
      W.level(server, "shirt", "loc_eu", { stocked_quantity = 1 })
      assert.same({ "eu1@example.com", "eu2@example.com" },
        W.wait_emails(server, "shirt", "sc_eu"))
      assert.same({ "eu1@example.com" },
        W.wait_emails(server, "shirt", "sc_world"))
      assert.same({ "any@example.com" }, W.wait_emails(server, "shirt", nil))
      W.settle(server)
      assert.same({}, W.emails_for(server, "shirt", "sc_us"), W.dump(server))
      assert.same({ "us1@example.com" },
        W.list(server, { variant_id = "shirt" }))
    end)

    it("does not fire a channel whose locations did not change", function()
      -- A location that no channel sells from raises only the overall sum.
      W.location(server, "loc_depot", "Depot")
      W.level(server, "shirt", "loc_depot", { stocked_quantity = 5 })
      assert.same({ "any@example.com" }, W.wait_emails(server, "shirt", nil))
      W.settle(server)
      assert.same({}, W.emails_for(server, "shirt", "sc_eu"))
      assert.same({}, W.emails_for(server, "shirt", "sc_us"))
      assert.same({ "eu1@example.com", "eu2@example.com", "us1@example.com" },
        W.list(server, { variant_id = "shirt" }))
    end)
  end)

  describe("reserved stock", function()
    before_each(function()
      W.variants(server, "hat")
      W.level(server, "hat", "loc_eu", { stocked_quantity = 0 })
      W.level(server, "hat", "loc_us",
        { stocked_quantity = 5, reserved_quantity = 5 })
    end)

    it("keeps a fully reserved location sold out until it is released",
      function()
        local v = W.variant(server, "hat")
        assert.equals(0, v.quantity)
        assert.equals(0, v.inventory_quantity)
        W.subscribed(server, "hat", "us1@example.com", { channel = "sc_us" },
          "sc_us")
        W.subscribed(server, "hat", "any@example.com", nil, nil)
        W.subscribed(server, "hat", "eu1@example.com", { channel = "sc_eu" },
          "sc_eu")

        -- Touching the level without freeing anything fires nothing.
        W.level(server, "hat", "loc_us", { stocked_quantity = 5 })
        W.settle(server)
        assert.same({}, W.events_for(server, "hat", "sc_us"), W.dump(server))
        assert.same({}, W.events_for(server, "hat", nil), W.dump(server))
        assert.equals(3, #W.list(server, { variant_id = "hat" }))

        -- Releasing the reservation fires the US channel and the unscoped.
        local level = W.level(server, "hat", "loc_us", { reserved_quantity = 0 })
        assert.equals(5, level.stocked_quantity)
        assert.equals(0, level.reserved_quantity)
        assert.equals(5, level.available_quantity)
        assert.same({ "us1@example.com" }, W.wait_emails(server, "hat", "sc_us"))
        assert.same({ "any@example.com" }, W.wait_emails(server, "hat", nil))
        W.settle(server)
        assert.same({}, W.events_for(server, "hat", "sc_eu"), W.dump(server))
        assert.same({ "eu1@example.com" }, W.list(server, { variant_id = "hat" }))
        assert.equals(5, W.variant(server, "hat").quantity)
      end)

    it("fires when a batch releases part of a reservation", function()
      W.subscribed(server, "hat", "us1@example.com", { channel = "sc_us" },
        "sc_us")
      helpers.assert_status(helpers.admin(server, "POST",
        "/admin/inventory/batch", { updates = {
          { variant_id = "hat", location_id = "loc_us", reserved_quantity = 4 },
        } }), 200)
      assert.same({ "us1@example.com" }, W.wait_emails(server, "hat", "sc_us"))
      assert.equals(1, W.variant(server, "hat").quantity)
    end)
  end)

  describe("linking a location to a channel", function()
    before_each(function()
      W.variants(server, "boot", "sock")
      W.level(server, "boot", "loc_eu", { stocked_quantity = 4 })
      W.level(server, "sock", "loc_us", { stocked_quantity = 0 })
      W.location(server, "loc_empty", "Empty")
    end)

    it("fires the channel's subscribers of variants stocked there",
      function()
        -- sc_us has no stock of boot, so a shopper may subscribe there, but
        -- not in sc_eu nor unscoped.
        W.subscribed(server, "boot", "us1@example.com", { channel = "sc_us" },
          "sc_us")
        W.refused_in_stock(server, "boot", "eu1@example.com",
          { channel = "sc_eu" })
        W.refused_in_stock(server, "boot", "any@example.com")
        W.subscribed(server, "sock", "us2@example.com", { channel = "sc_us" },
          "sc_us")

        -- A location without stock changes nothing.
        local sc = W.channel(server, "sc_us", { "loc_us", "loc_empty" })
        assert.same({ "loc_empty", "loc_us" }, sc.location_ids)
        W.settle(server)
        assert.same({}, W.events_for(server, "boot", "sc_us"), W.dump(server))
        assert.same({ "us1@example.com" },
          W.list(server, { variant_id = "boot" }))

        sc = W.channel(server, "sc_us", { "loc_us", "loc_eu" })
        assert.same({ "loc_eu", "loc_us" }, sc.location_ids)
        assert.same({ "us1@example.com" }, W.wait_emails(server, "boot", "sc_us"))
        W.settle(server)
        assert.equals(1, #W.events_for(server, "boot", "sc_us"))
        assert.same({}, W.list(server, { variant_id = "boot" }))
        -- sock has no stock anywhere: its subscriber stays.
        assert.same({}, W.events_for(server, "sock", "sc_us"), W.dump(server))
        assert.same({ "us2@example.com" },
          W.list(server, { variant_id = "sock" }))
      end)

    it("fires a new channel created with a stocked location", function()
      -- A channel first created empty, subscribed to, then given loc_eu.
      W.channel(server, "sc_pop", {})
      W.subscribed(server, "boot", "pop@example.com", { channel = "sc_pop" },
        "sc_pop")
      W.channel(server, "sc_pop", { "loc_eu" })
      assert.same({ "pop@example.com" },
        W.wait_emails(server, "boot", "sc_pop"))
    end)
  end)

  describe("inventory_required", function()
    it("judges each scope against the threshold", function()
      -- This test needs its own options: replace the shared server.
      helpers.cleanup()
      server = W.start {
        options = "{ trigger_delay = 0, inventory_required = 2 }" }
      W.two_regions(server)
      W.variants(server, "cap")
      W.level(server, "cap", "loc_eu", { stocked_quantity = 0 })
      W.level(server, "cap", "loc_us", { stocked_quantity = 0 })
      W.subscribed(server, "cap", "eu@example.com", { channel = "sc_eu" },
        "sc_eu")
      W.subscribed(server, "cap", "us@example.com", { channel = "sc_us" },
        "sc_us")
      W.subscribed(server, "cap", "any@example.com", nil, nil)

      -- EU 2 and US 1: overall 3 > 2, but neither channel is above 2.
      W.level(server, "cap", "loc_eu", { stocked_quantity = 2 })
      W.level(server, "cap", "loc_us", { stocked_quantity = 1 })
      assert.same({ "any@example.com" }, W.wait_emails(server, "cap", nil))
      W.settle(server)
      assert.same({}, W.events_for(server, "cap", "sc_eu"), W.dump(server))
      assert.same({}, W.events_for(server, "cap", "sc_us"), W.dump(server))
      assert.same({ "eu@example.com", "us@example.com" },
        W.list(server, { variant_id = "cap" }))

      W.level(server, "cap", "loc_eu", { stocked_quantity = 3 })
      assert.same({ "eu@example.com" }, W.wait_emails(server, "cap", "sc_eu"))
      W.settle(server)
      assert.same({ "us@example.com" }, W.list(server, { variant_id = "cap" }))
    end)
  end)

  describe("notify_per_unit", function()
    it("throttles each scope by its own quantity", function()
      helpers.cleanup()
      server = W.start { options = "{ trigger_delay = 0, notify_per_unit = 1,"
        .. " notify_interval = 600000 }" }
      W.two_regions(server)
      W.variants(server, "m")
      W.level(server, "m", "loc_eu", { stocked_quantity = 0 })
      for i = 1, 3 do
        W.subscribed(server, "m", "eu" .. i .. "@example.com",
          { channel = "sc_eu" }, "sc_eu")
        W.subscribed(server, "m", "us" .. i .. "@example.com",
          { channel = "sc_us" }, "sc_us")
        W.subscribed(server, "m", "any" .. i .. "@example.com", nil, nil)
      end
      -- EU 2 (sc_eu 2, overall 2, sc_us 0): the two oldest of sc_eu and of
      -- the unscoped scope hear of it; sc_us hears nothing.
      W.level(server, "m", "loc_eu", { stocked_quantity = 2 })
      assert.same({ "eu1@example.com", "eu2@example.com" },
        W.wait_emails(server, "m", "sc_eu"))
      assert.same({ "any1@example.com", "any2@example.com" },
        W.wait_emails(server, "m", nil))
      W.settle(server)
      assert.same({}, W.emails_for(server, "m", "sc_us"), W.dump(server))
      local left = W.list(server, { variant_id = "m" })
      table.sort(left)
      assert.same({ "any3@example.com", "eu3@example.com", "us1@example.com",
        "us2@example.com", "us3@example.com" }, left)
    end)
  end)

  describe("a variant without levels", function()
    it("counts its inventory_quantity in every channel", function()
      W.variants(server, "plain")
      W.subscribed(server, "plain", "eu@example.com", { channel = "sc_eu" },
        "sc_eu")
      W.subscribed(server, "plain", "us@example.com", { key = "pk_both",
        channel = "sc_us" }, "sc_us")
      W.post(server, "/admin/variants/plain", { inventory_quantity = 5 })
      assert.same({ "eu@example.com" }, W.wait_emails(server, "plain", "sc_eu"))
      assert.same({ "us@example.com" }, W.wait_emails(server, "plain", "sc_us"))
      W.refused_in_stock(server, "plain", "eu@example.com",
        { channel = "sc_eu" })
    end)
  end)

  describe("after a crash", function()
    it("still runs the checks that levels and channel links scheduled",
      function()
        helpers.cleanup()
        server = W.start { options = "{ trigger_delay = 1500 }" }
        W.two_regions(server)
        W.variants(server, "a", "b")
        W.level(server, "a", "loc_eu", { stocked_quantity = 0 })
        W.level(server, "b", "loc_eu", { stocked_quantity = 3 })
        W.subscribed(server, "a", "x@example.com", { channel = "sc_eu" },
          "sc_eu")
        W.subscribed(server, "b", "y@example.com", { channel = "sc_us" },
          "sc_us")
        W.level(server, "a", "loc_eu", { stocked_quantity = 1 })
        W.channel(server, "sc_us", { "loc_us", "loc_eu" })
        server:kill9()
        -- Killed before the checks were due: nothing fired yet.
        assert.same({}, W.restocks(server))

        server = W.restart(server)
        assert.same({ "x@example.com" }, W.wait_emails(server, "a", "sc_eu", 10))
        assert.same({ "y@example.com" }, W.wait_emails(server, "b", "sc_us", 10))
        -- The channels, keys and levels survived too.
        assert.equals(3, W.variant(server, "b").quantity)
        -- (pk_eu is known and gives sc_eu, where a is now in stock.)
        W.refused_in_stock(server, "a", "z@example.com", { key = "pk_eu" })
      end)
  end)
end)
