-- A restock of more subscribers than one check transaction takes (10,000):
-- the check notifies them chunk by chunk, each chunk in a transaction of its
-- own, so the loop serves requests in between; still every subscriber
-- exactly once, in subscription order.
local helpers = require "spec.support.helpers"

local admin = helpers.admin
local N = 12000

describe("a restock of 12,000 subscribers", function()
  after_each(helpers.cleanup)

  it("is notified in chunks, everyone once, in order", function()
    local dir = helpers.tmpdir()
    local rec = dir .. "/records.jsonl"
    local server = helpers.start { dir = dir,
      plugin = helpers.recorder_plugin(rec) .. [[
restock.options { batch_size = 2000 }
restock.subscribe("restock-notification.restocked", function(data)
  record("restocked", data)
end)
]] }
    helpers.assert_status(admin(server, "POST", "/admin/variants",
      { id = "big", inventory_quantity = 0 }), 200)

    -- Pipelined in rounds of 500, to keep the test quick.
    local conn = helpers.connect(server, 30)
    for round = 0, N / 500 - 1 do
      local bytes = {}
      for i = round * 500 + 1, round * 500 + 500 do
        bytes[#bytes + 1] = helpers.build_request(server, "POST",
          "/restock-notifications/variants/big", { json = {
            email = string.format("s%05d@example.com", i) } }, true)
      end
      assert(conn:send_raw(table.concat(bytes)))
      for _ = 1, 500 do
        local res = assert(conn:read_response())
        if res.status ~= 201 then helpers.assert_status(res, 201) end
      end
    end
    conn:close()

    helpers.assert_status(admin(server, "POST", "/admin/variants/big",
      { inventory_quantity = 3 }), 200)
    local recs = helpers.wait_records(rec, "restocked", 6, 30)
    assert.truthy(recs, "expected 6 events; stderr:\n" .. server:stderr())
    table.sort(recs, function(a, b) return a.data.emails[1] < b.data.emails[1] end)
    local n = 0
    for _, r in ipairs(recs) do
      assert.equals(2000, #r.data.emails)
      for _, e in ipairs(r.data.emails) do
        n = n + 1
        assert.equals(string.format("s%05d@example.com", n), e)
      end
    end
    assert.equals(N, n)
    -- Two transactions: 10,000 then 2,000.
    local log = server:stderr()
    assert.truthy(log:find("restock check of big: 10000 subscriptions notified",
      1, true), log)
    assert.truthy(log:find("restock check of big: 2000 subscriptions notified",
      1, true), log)
    local left = admin(server, "GET", "/admin/restock-notifications"
      .. helpers.query({ variant_id = "big", limit = 1 }))
    assert.equals(0, left.json.count)
    assert.equals(6, helpers.events(server,
      { name = "restock-notification.restocked" }).count)
  end)
end)
