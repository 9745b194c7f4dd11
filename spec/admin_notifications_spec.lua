-- GET and DELETE /admin/restock-notifications: filters, paging, shapes and
-- the right to be forgotten.
local helpers = require "spec.support.helpers"

local null = helpers.null
local admin = helpers.admin

local function subscribe(server, variant_id, email)
  local res = helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { json = { email = email } })
  helpers.assert_status(res, 201)
  return res.json.restock_notification
end

local function list(server, query)
  return admin(server, "GET", "/admin/restock-notifications"
    .. helpers.query(query or {}))
end

-- The emails of a list answer, in order.
local function emails(json)
  local t = {}
  for i, n in ipairs(json.restock_notifications) do
    t[i] = n.email
  end
  return t
end

-- The "variant_id email" pairs of a list answer, in order.
local function pairs_of(json)
  local t = {}
  for i, n in ipairs(json.restock_notifications) do
    t[i] = n.variant_id .. " " .. n.email
  end
  return t
end

describe("/admin/restock-notifications", function()
  after_each(helpers.cleanup)

  local server
  -- The subscriptions made, in order, as "variant_id email".
  local made
  before_each(function()
    server = helpers.start()
    helpers.assert_status(admin(server, "POST", "/admin/variants",
      { variants = { { id = "va" }, { id = "vb" }, { id = "vc" } } }), 200)
    made = {}
    local plan = {
      { "va", "ann@example.com" }, { "vb", "ann@example.com" },
      { "va", "ben@example.com" }, { "vc", "cat@example.com" },
      { "vb", "ben@example.com" }, { "va", "cat@example.com" },
    }
    for _, p in ipairs(plan) do
      subscribe(server, p[1], p[2])
      made[#made + 1] = p[1] .. " " .. p[2]
    end
  end)

  describe("GET", function()
    it("lists every active subscription oldest first", function()
      local res = list(server)
      helpers.assert_status(res, 200)
      assert.equals(6, res.json.count)
      assert.equals(50, res.json.limit)
      assert.equals(0, res.json.offset)
      assert.same(made, pairs_of(res.json))
    end)

    it("gives each entry its fields", function()
      local res = list(server, { variant_id = "vc" })
      helpers.assert_status(res, 200)
      local n = res.json.restock_notifications[1]
      assert.equals("vc", n.variant_id)
      assert.equals("cat@example.com", n.email)
      assert.equals(null, n.sales_channel_id)
      assert.truthy(n.created_at ~= nil and n.created_at ~= null)
    end)

    it("reports the created_at of the subscribe answer", function()
      local created = subscribe(server, "vc", "dan@example.com").created_at
      local res = list(server, { email = "dan@example.com" })
      assert.equals(created, res.json.restock_notifications[1].created_at)
    end)

    it("filters by variant_id", function()
      local res = list(server, { variant_id = "va" })
      helpers.assert_status(res, 200)
      assert.equals(3, res.json.count)
      assert.same({ "ann@example.com", "ben@example.com", "cat@example.com" },
        emails(res.json))
    end)

    it("filters by email", function()
      local res = list(server, { email = "ben@example.com" })
      helpers.assert_status(res, 200)
      assert.equals(2, res.json.count)
      assert.same({ "va ben@example.com", "vb ben@example.com" },
        pairs_of(res.json))
    end)

    it("filters by variant_id and email together", function()
      local res = list(server, { variant_id = "vb", email = "ann@example.com" })
      helpers.assert_status(res, 200)
      assert.equals(1, res.json.count)
      assert.same({ "vb ann@example.com" }, pairs_of(res.json))
    end)

    it("answers an empty list for a filter nothing matches", function()
      local res = list(server, { variant_id = "nobody" })
      helpers.assert_status(res, 200)
      assert.equals(0, res.json.count)
      assert.equals(0, #res.json.restock_notifications)
    end)

    it("answers an empty list for an unknown sales_channel_id", function()
      local res = list(server, { sales_channel_id = "sc_none" })
      helpers.assert_status(res, 200)
      assert.equals(0, res.json.count)
      assert.equals(0, #res.json.restock_notifications)
    end)

    it("pages with limit and offset, counting every match", function()
      local res = list(server, { limit = 2, offset = 1 })
      helpers.assert_status(res, 200)
      assert.equals(6, res.json.count)
      assert.equals(2, res.json.limit)
      assert.equals(1, res.json.offset)
      assert.same({ made[2], made[3] }, pairs_of(res.json))

      res = list(server, { limit = 4, offset = 4 })
      assert.equals(6, res.json.count)
      assert.same({ made[5], made[6] }, pairs_of(res.json))

      res = list(server, { limit = 10, offset = 6 })
      assert.equals(6, res.json.count)
      assert.equals(0, #res.json.restock_notifications)
    end)

    it("pages within a filter", function()
      local res = list(server, { variant_id = "va", limit = 1, offset = 1 })
      helpers.assert_status(res, 200)
      assert.equals(3, res.json.count)
      assert.same({ "ben@example.com" }, emails(res.json))
    end)

    it("treats status=active like the default", function()
      local res = list(server, { status = "active" })
      helpers.assert_status(res, 200)
      assert.equals(6, res.json.count)
      assert.same(made, pairs_of(res.json))
    end)

    it("lists no notified subscriptions yet", function()
      local res = list(server, { status = "notified" })
      helpers.assert_status(res, 200)
      assert.equals(0, res.json.count)
      assert.equals(0, #res.json.restock_notifications)
    end)

    local bad = {
      { "a non-numeric limit", { limit = "ten" } },
      { "a negative limit", { limit = "-1" } },
      { "a fractional limit", { limit = "1.5" } },
      { "a non-numeric offset", { offset = "x" } },
      { "a negative offset", { offset = "-5" } },
      { "an unknown status", { status = "bogus" } },
    }
    for _, case in ipairs(bad) do
      it("rejects " .. case[1] .. " with 400 invalid_data", function()
        helpers.assert_error(list(server, case[2]), 400, "invalid_data")
      end)
    end
  end)

  describe("GET status=notified", function()
    it("filters the history by email, variant and channel", function()
      local server = helpers.start()
      for _, id in ipairs { "x", "y" } do
        helpers.assert_status(admin(server, "POST", "/admin/variants",
          { id = id, inventory_quantity = 0 }), 200)
      end
      subscribe(server, "x", "ann@example.com")
      subscribe(server, "y", "ann@example.com")
      subscribe(server, "x", "bob@example.com")
      for _, id in ipairs { "x", "y" } do
        helpers.assert_status(admin(server, "POST", "/admin/variants/" .. id,
          { inventory_quantity = 3 }), 200)
      end
      assert.truthy(helpers.wait_for(function()
        return list(server, { status = "notified" }).json.count == 3
      end, 10), "the restocks never notified:\n" .. server:stderr())

      local function notified(query)
        query.status = "notified"
        local res = list(server, query)
        helpers.assert_status(res, 200)
        for _, n in ipairs(res.json.restock_notifications) do
          assert.equals("string", type(n.notified_at))
        end
        assert.equals(#res.json.restock_notifications, res.json.count)
        -- Sorted: the two variants' checks may run in either order.
        local t = pairs_of(res.json)
        table.sort(t)
        return t
      end
      assert.same({ "x ann@example.com", "y ann@example.com" },
        notified { email = "ann@example.com" })
      assert.same({ "y ann@example.com" },
        notified { email = "ann@example.com", variant_id = "y" })
      assert.same({ "x ann@example.com", "x bob@example.com" },
        notified { variant_id = "x" })
      assert.same({}, notified { variant_id = "x", sales_channel_id = "nope" })
      assert.same({}, notified { email = "cy@example.com" })
      -- Nothing is left active.
      assert.equals(0, list(server, { variant_id = "x" }).json.count)
    end)
  end)

  describe("DELETE", function()
    -- A subscription is linked to its subscribed event by predicting the
    -- event's id (one past the largest). When SQLite cannot give that id
    -- (the largest possible is taken, so it picks one at random) the link
    -- is written afterwards: forgetting the email still finds the event.
    it("forgets the subscribed event whose id was not the one predicted",
      function()
        if helpers.sqlite_only("PostgreSQL gives event ids from a sequence, "
          .. "never a random one") then return end
        local dir = helpers.tmpdir()
        local db = dir .. "/restock.db"
        local rc, _, stderr = helpers.run({ "migrations", "run", "--db", db })
        assert.equals(0, rc, stderr)
        assert.is_true(os.execute(string.format([[python3 -c '
import sqlite3
c = sqlite3.connect("%s")
c.execute("INSERT INTO events (id, name, data, status, created_at) VALUES (9223372036854775807, ?, ?, ?, ?)",
  ("shop.last", "{}", "delivered", "2026-01-01T00:00:00.000Z"))
c.commit()
']], db)))
        local server = helpers.start { dir = dir, db = db, no_migrate = true }
        helpers.assert_status(admin(server, "POST", "/admin/variants",
          { id = "m", inventory_quantity = 0 }), 200)
        subscribe(server, "m", "max@example.com")
        local function subscribed_count()
          return admin(server, "GET",
            "/admin/events?name=restock-notification.subscribed").json.count
        end
        assert.equals(1, subscribed_count())
        helpers.assert_status(admin(server, "DELETE",
          "/admin/restock-notifications?email=max%40example.com"), 200)
        assert.equals(0, subscribed_count())
      end)

    it("forgets the email in the outbox too", function()
      local server = helpers.start()
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "gone", inventory_quantity = 0 }), 200)
      subscribe(server, "gone", "ann@example.com")
      subscribe(server, "gone", "bob@example.com")
      helpers.assert_status(admin(server, "POST", "/admin/variants/gone",
        { inventory_quantity = 4 }), 200)
      local restocked
      helpers.wait_for(function()
        local res = admin(server, "GET",
          "/admin/events?name=restock-notification.restocked")
        restocked = res.json.events[1]
        return restocked ~= nil
      end, 5)
      assert.same({ "ann@example.com", "bob@example.com" },
        restocked.data.emails)

      local res = admin(server, "DELETE",
        "/admin/restock-notifications?email=Ann%40Example.com")
      helpers.assert_status(res, 200)
      assert.same({ deleted = 1 }, res.json) -- the notified history row

      local events = admin(server, "GET", "/admin/events?limit=1000").json
      for _, e in ipairs(events.events) do
        local text = require("cjson").encode(e.data)
        assert.is_nil(text:find("ann@example.com", 1, true),
          "the email is still in event " .. e.id .. ": " .. text)
      end
      restocked = admin(server, "GET",
        "/admin/events?name=restock-notification.restocked").json.events[1]
      assert.same({ "bob@example.com" }, restocked.data.emails)
      local subscribed = admin(server, "GET",
        "/admin/events?name=restock-notification.subscribed").json
      assert.equals(1, subscribed.count)
      assert.equals("bob@example.com", subscribed.events[1].data.email)
    end)

    it("scrubs the email from the events a plugin emitted", function()
      -- Each subscription makes the plugin emit shop.welcome with the email
      -- in several places, beside data that must stay.
      local server = helpers.start { plugin = [[
local restock = require "restock"
restock.subscribe("restock-notification.subscribed", function(data)
  restock.emit("shop.welcome", {
    email = data.email, note = "keep me", n = 3,
    to = { data.email, "desk@shop.example" },
    seen = { [data.email] = true, other = 1 },
  })
end, { name = "welcomer" })
]] }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "w", inventory_quantity = 0 }), 200)
      subscribe(server, "w", "ann@example.com")
      subscribe(server, "w", "bob@example.com")
      local function welcomes()
        local res = admin(server, "GET", "/admin/events?name=shop.welcome")
        helpers.assert_status(res, 200)
        return res.json.events
      end
      assert.truthy(helpers.wait_for(function() return #welcomes() == 2 end,
        10), "the plugin emitted nothing:\n" .. server:stderr())

      -- Forgetting one variant's subscription leaves them alone.
      helpers.assert_status(admin(server, "DELETE",
        "/admin/restock-notifications?email=ann%40example.com&variant_id=w"),
        200)
      local by_email = {}
      for _, e in ipairs(welcomes()) do
        by_email[e.data.email] = e.data
      end
      assert.truthy(by_email["ann@example.com"])

      -- Forgetting the email takes it out everywhere, in any letter case.
      helpers.assert_status(admin(server, "DELETE",
        "/admin/restock-notifications?email=ANN%40example.com"), 200)
      local events = welcomes()
      assert.equals(2, #events)
      local ann, bob
      for _, e in ipairs(events) do
        local text = require("cjson").encode(e.data)
        if text:find("bob@example.com", 1, true) then
          bob = e.data
        else
          ann = e.data
        end
        assert.is_nil(text:find("ann@example.com", 1, true), text)
      end
      assert.equals(null, ann.email)
      assert.equals("keep me", ann.note)
      assert.equals(3, ann.n)
      assert.same({ "desk@shop.example" }, ann.to)
      assert.same({ other = 1 }, ann.seen)
      -- The other shopper's event is untouched.
      assert.equals("bob@example.com", bob.email)
      assert.same({ "bob@example.com", "desk@shop.example" }, bob.to)
      assert.is_true(bob.seen["bob@example.com"])
    end)

    it("erases every subscription of an email", function()
      local res = admin(server, "DELETE", "/admin/restock-notifications"
        .. helpers.query({ email = "ann@example.com" }))
      helpers.assert_status(res, 200)
      assert.same({ deleted = 2 }, res.json)
      assert.equals(0, list(server, { email = "ann@example.com" }).json.count)
      assert.equals(4, list(server).json.count)
    end)

    it("erases one variant's subscription of an email", function()
      local res = admin(server, "DELETE", "/admin/restock-notifications"
        .. helpers.query({ email = "ben@example.com", variant_id = "vb" }))
      helpers.assert_status(res, 200)
      assert.same({ deleted = 1 }, res.json)
      local left = list(server, { email = "ben@example.com" }).json
      assert.same({ "va ben@example.com" }, pairs_of(left))
      assert.equals(5, list(server).json.count)
    end)

    it("answers deleted 0 when nothing matches", function()
      local res = admin(server, "DELETE", "/admin/restock-notifications"
        .. helpers.query({ email = "nobody@example.com" }))
      helpers.assert_status(res, 200)
      assert.same({ deleted = 0 }, res.json)
      assert.equals(6, list(server).json.count)
    end)

    it("rejects a request without email", function()
      local res = admin(server, "DELETE", "/admin/restock-notifications")
      helpers.assert_error(res, 400, "invalid_data")
      res = admin(server, "DELETE",
        "/admin/restock-notifications?variant_id=va")
      helpers.assert_error(res, 400, "invalid_data")
      assert.equals(6, list(server).json.count)
    end)

    it("lets the email subscribe again afterwards", function()
      admin(server, "DELETE", "/admin/restock-notifications"
        .. helpers.query({ email = "cat@example.com" }))
      subscribe(server, "va", "cat@example.com")
      local res = list(server, { email = "cat@example.com" })
      assert.same({ "va cat@example.com" }, pairs_of(res.json))
    end)
  end)
end)
