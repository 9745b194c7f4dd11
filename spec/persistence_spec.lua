-- What is committed survives the process: a clean SIGTERM restart and a
-- SIGKILL right after the 201.
local helpers = require "spec.support.helpers"

local admin = helpers.admin

local function subscribe(server, variant_id, email)
  local res = helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { json = { email = email } })
  helpers.assert_status(res, 201)
  return res.json.restock_notification
end

local function list(server, query)
  local res = admin(server, "GET", "/admin/restock-notifications"
    .. helpers.query(query or {}))
  helpers.assert_status(res, 200)
  return res.json
end

describe("persistence", function()
  after_each(helpers.cleanup)

  -- Starts a server, creates a sold-out variant and subscribes two emails.
  local function populate()
    local server = helpers.start()
    helpers.assert_status(admin(server, "POST", "/admin/variants",
      { id = "v1", title = "Kept", inventory_quantity = 0 }), 200)
    local a = subscribe(server, "v1", "alice@example.com")
    local b = subscribe(server, "v1", "bob@example.com")
    return server, { a, b }
  end

  -- Checks that a server on the same database still has everything.
  local function assert_kept(server, made)
    local v = admin(server, "GET", "/admin/variants/v1")
    helpers.assert_status(v, 200)
    assert.equals("Kept", v.json.variant.title)
    local l = list(server, { variant_id = "v1" })
    assert.equals(#made, l.count)
    for i, n in ipairs(made) do
      assert.equals(n.email, l.restock_notifications[i].email)
      assert.equals(n.created_at, l.restock_notifications[i].created_at)
    end
  end

  it("keeps subscriptions across a SIGTERM restart", function()
    local server, made = populate()
    assert.equals(0, server:stop("TERM"))
    local again = helpers.start({ dir = server.dir, db = server.db })
    assert_kept(again, made)
  end)

  it("keeps subscriptions when killed right after the 201", function()
    local server, made = populate()
    server:kill9()
    local again = helpers.start({ dir = server.dir, db = server.db })
    assert_kept(again, made)
  end)

  it("keeps a duplicate's first created_at across a restart", function()
    local server, made = populate()
    server:kill9()
    local again = helpers.start({ dir = server.dir, db = server.db })
    local dup = subscribe(again, "v1", "alice@example.com")
    assert.equals(made[1].created_at, dup.created_at)
    assert.equals(2, list(again, { variant_id = "v1" }).count)
  end)

  it("keeps variant updates when killed right after the 200", function()
    local server = helpers.start()
    helpers.assert_status(admin(server, "POST", "/admin/variants/v2",
      { inventory_quantity = 3, sku = "S-2" }), 200)
    server:kill9()
    local again = helpers.start({ dir = server.dir, db = server.db })
    local v = admin(again, "GET", "/admin/variants/v2")
    helpers.assert_status(v, 200)
    assert.equals(3, v.json.variant.inventory_quantity)
    assert.equals("S-2", v.json.variant.sku)
  end)

  it("keeps deletions when killed right after the answer", function()
    local server = populate()
    helpers.assert_status(admin(server, "DELETE",
      "/admin/restock-notifications?email=alice%40example.com"), 200)
    server:kill9()
    local again = helpers.start({ dir = server.dir, db = server.db })
    local l = list(again, { variant_id = "v1" })
    assert.equals(1, l.count)
    assert.equals("bob@example.com", l.restock_notifications[1].email)
  end)
end)
