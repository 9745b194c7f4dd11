-- GET /admin/events filters (contract section 5): by name and status, with
-- count, limit and offset. Each filter has its own query plan (open events,
-- a name other than restock-notification.subscribed through the partial
-- index events_named, or a walk of the table), so each is checked here
-- against the same mixed outbox.
local helpers = require "spec.support.helpers"

local admin = helpers.admin

local SUBSCRIBED = "restock-notification.subscribed"
local RESTOCKED = "restock-notification.restocked"

-- Every subscribed event makes its handler emit a shop.custom event, which
-- no handler takes (so it is delivered when written).
local PLUGIN = [[
local restock = require "restock"
restock.subscribe("restock-notification.subscribed", function(data)
  restock.emit("shop.custom", { email = data.email })
end, { name = "emitter" })
]]

local function events(server, query)
  local res = admin(server, "GET", "/admin/events" .. helpers.query(query))
  helpers.assert_status(res, 200)
  return res.json
end

local function ids(list)
  local t = {}
  for i, e in ipairs(list.events) do
    t[i] = e.id
  end
  return t
end

describe("GET /admin/events filters", function()
  local server

  setup(function()
    server = helpers.start { plugin = PLUGIN }
    helpers.assert_status(admin(server, "POST", "/admin/variants",
      { id = "v", inventory_quantity = 0 }), 200)
    for _, email in ipairs { "a@example.com", "b@example.com",
      "c@example.com" } do
      helpers.assert_status(helpers.request(server, "POST",
        "/restock-notifications/variants/v", { json = { email = email } }),
        201)
    end
    helpers.assert_status(admin(server, "POST", "/admin/variants/v",
      { inventory_quantity = 5 }), 200)
    -- 3 subscribed, 3 shop.custom, 1 product-variant.updated and 1
    -- restocked, all delivered.
    assert.truthy(helpers.wait_for(function()
      return events(server, { status = "delivered" }).count == 8
    end, 10), "the outbox never settled:\n" .. server:stderr())
  end)

  teardown(function()
    helpers.cleanup()
  end)

  it("lists every event, oldest first, without a filter", function()
    local all = events(server, {})
    assert.equals(8, all.count)
    local seen = ids(all)
    for i = 2, #seen do
      assert.truthy(seen[i - 1] < seen[i])
    end
  end)

  for _, case in ipairs {
    { "shop.custom", 3 }, { RESTOCKED, 1 }, { SUBSCRIBED, 3 },
    { "product-variant.updated", 1 },
    { "no.such.event", 0 },
  } do
    local name, n = case[1], case[2]
    it("lists only " .. name .. " events by name, with or without status",
      function()
        for _, query in ipairs { { name = name },
          { name = name, status = "delivered" } } do
          local list = events(server, query)
          assert.equals(n, list.count)
          assert.equals(n, #list.events)
          for _, e in ipairs(list.events) do
            assert.equals(name, e.name)
            assert.equals("delivered", e.status)
          end
        end
        local none = events(server, { name = name, status = "dead" })
        assert.equals(0, none.count)
        assert.equals(0, #none.events)
      end)
  end

  it("pages a named listing with limit and offset, oldest first", function()
    local all = ids(events(server, { name = "shop.custom" }))
    local page = events(server, { name = "shop.custom", limit = 2,
      offset = 1 })
    assert.equals(3, page.count)
    assert.same({ all[2], all[3] }, ids(page))
    local custom = events(server, { name = "shop.custom" }).events
    local emails = {}
    for i, e in ipairs(custom) do
      emails[i] = e.data.email
    end
    table.sort(emails)
    assert.same({ "a@example.com", "b@example.com", "c@example.com" },
      emails)
  end)
end)
