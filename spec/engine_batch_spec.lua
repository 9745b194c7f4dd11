-- A large fan-out (contract sections 2 and 3): 2,500 subscribers of one
-- variant are notified in restocked events of at most batch_size emails, in
-- subscription order, each email exactly once.
local helpers = require "spec.support.helpers"

local admin = helpers.admin

local RESTOCKED = "restock-notification.restocked"
local N = 2500

describe("batch_size", function()
  after_each(helpers.cleanup)

  it("splits 2,500 subscribers into events of 1000, 1000 and 500",
    function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir,
        plugin = helpers.recorder_plugin(rec) .. [[
restock.options { batch_size = 1000 }
restock.subscribe("restock-notification.restocked", function(data)
  record("restocked", data)
end)
]] }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)

      local emails = {}
      local conn = helpers.connect(server, 10)
      for i = 1, N do
        local email = string.format("shopper%04d@example.com", i)
        emails[i] = email
        local res = conn:request("POST", "/restock-notifications/variants/v",
          { json = { email = email } })
        if res.status ~= 201 then
          helpers.assert_status(res, 201)
        end
      end
      conn:close()
      local res = admin(server, "GET", "/admin/restock-notifications"
        .. helpers.query({ variant_id = "v", limit = 1 }))
      assert.equals(N, res.json.count)

      helpers.assert_status(admin(server, "POST", "/admin/variants/v",
        { inventory_quantity = 1 }), 200)
      local recs = helpers.wait_records(rec, "restocked", 3, 15)
      assert.truthy(recs, "expected 3 events, got "
        .. #helpers.read_records(rec, "restocked") .. "; stderr:\n"
        .. server:stderr())

      -- The events are delivered in the order they were written; sort by
      -- their first email anyway, which is what subscription order means.
      table.sort(recs, function(a, b)
        return a.data.emails[1] < b.data.emails[1]
      end)
      local sizes, seen, all = {}, {}, {}
      for i, r in ipairs(recs) do
        assert.equals("v", r.data.variant_id)
        sizes[i] = #r.data.emails
        for _, e in ipairs(r.data.emails) do
          assert.is_nil(seen[e], e .. " was notified twice")
          seen[e] = true
          all[#all + 1] = e
        end
      end
      assert.same({ 1000, 1000, 500 }, sizes)
      assert.equals(N, #all)
      -- Every email, in subscription order across the three events.
      for i = 1, N do
        if all[i] ~= emails[i] then
          error(string.format("email %d is %s, expected %s", i,
            tostring(all[i]), emails[i]))
        end
      end

      -- Three events in the outbox, no more; nobody left subscribed.
      local j = helpers.events(server, { name = RESTOCKED })
      assert.equals(3, j.count)
      res = admin(server, "GET", "/admin/restock-notifications"
        .. helpers.query({ variant_id = "v", limit = 1 }))
      assert.equals(0, res.json.count)
      res = admin(server, "GET", "/admin/restock-notifications"
        .. helpers.query({ variant_id = "v", status = "notified",
          limit = 1 }))
      assert.equals(N, res.json.count)
    end)
end)
