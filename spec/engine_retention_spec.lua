-- Retention of the outbox (RESTOCK_EVENT_RETENTION): delivered events older
-- than the retention are deleted with their deliveries; dead ones stay for
-- an operator to see and retry.
local helpers = require "spec.support.helpers"

local admin = helpers.admin

describe("RESTOCK_EVENT_RETENTION", function()
  after_each(helpers.cleanup)

  it("deletes delivered events once they are old enough, and keeps dead ones",
    function()
      local server = helpers.start { env = { RESTOCK_EVENT_RETENTION = "1s" },
        plugin = [[
local restock = require "restock"
restock.subscribe("restock-notification.restocked", function()
  error("mail server down")
end, { name = "mailer", max_attempts = 1 })
]] }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)
      for i = 1, 3 do
        helpers.assert_status(helpers.request(server, "POST",
          "/restock-notifications/variants/v",
          { json = { email = "s" .. i .. "@example.com" } }), 201)
      end
      helpers.assert_status(admin(server, "POST", "/admin/variants/v",
        { inventory_quantity = 2 }), 200)
      -- 3 subscribed (no handler: delivered at once), 1 product-variant
      -- updated (delivered), 1 restocked (dead after its one attempt).
      -- The pruner may already be deleting the delivered ones while the
      -- restocked event runs (a second is short on a loaded machine), so
      -- what it deleted is counted from its log, not from a listing taken
      -- in between.
      assert(helpers.wait_for(function()
        return helpers.events(server, { status = "dead" }).count == 1
      end, 10), server:stderr())

      local function deleted()
        local n = 0
        for k in server:stderr():gmatch("retention: deleted (%d+) delivered") do
          n = n + tonumber(k)
        end
        return n
      end
      local left
      assert(helpers.wait_for(function()
        left = helpers.events(server, {})
        return left.count == 1 and deleted() == 4
      end, 10), "events left: " .. tostring(left and left.count)
        .. ", deleted: " .. deleted() .. "\n" .. server:stderr())
      assert.equals("restock-notification.restocked", left.events[1].name)
      assert.equals("dead", left.events[1].status)
      -- The dead one can still be retried.
      helpers.assert_status(admin(server, "POST", string.format(
        "/admin/events/%d/retry", left.events[1].id)), 200)
    end)

  it("refuses a retention it cannot read", function()
    local rc, _, stderr = helpers.run({ "start", "--port", "0", "--db",
      helpers.tmpdir() .. "/x.db" }, { RESTOCK_EVENT_RETENTION = "soon" },
      { timeout = 10 })
    assert.equals(2, rc)
    assert.truthy(stderr:find("RESTOCK_EVENT_RETENTION", 1, true), stderr)
  end)
end)
