-- How many handler runs a server starts at once: at most 32, and no more
-- than hold 4 MiB of event data between them (OUTBOX_MAX_INFLIGHT_BYTES),
-- so that a restock's large events do not all sit decoded in memory at once
-- while their handlers wait on a mail API. One run always starts, however
-- large its event.
local helpers = require "spec.support.helpers"

local admin = helpers.admin

-- A plugin whose product-variant.updated handler emits 8 "probe" events of
-- `pad` bytes each; the probe handler records how many probes run at once.
local function plugin(rec, pad)
  return helpers.recorder_plugin(rec) .. string.format([[
local PAD = %d
restock.subscribe("product-variant.updated", function(data)
  for i = 1, 8 do
    assert(restock.emit("probe", { n = i, pad = string.rep("x", PAD) }))
  end
end)
local running = 0
restock.subscribe("probe", function(data)
  running = running + 1
  record("started", { n = data.n, running = running })
  restock.sleep(400)
  running = running - 1
end)
]], pad)
end

local function most_at_once(pad)
  local dir = helpers.tmpdir()
  local rec = dir .. "/records.jsonl"
  local server = helpers.start { dir = dir, plugin = plugin(rec, pad) }
  helpers.assert_status(admin(server, "POST", "/admin/variants",
    { id = "v1", inventory_quantity = 0 }), 200)
  helpers.assert_status(admin(server, "POST", "/admin/variants/v1",
    { inventory_quantity = 1 }), 200)
  local recs = helpers.wait_records(rec, "started", 8, 30)
  assert.truthy(recs, "expected 8 probe runs; stderr:\n" .. server:stderr())
  local most, seen = 0, {}
  for _, r in ipairs(recs) do
    most = math.max(most, r.data.running)
    seen[r.data.n] = true
  end
  for i = 1, 8 do assert.truthy(seen[i], "probe " .. i .. " never ran") end
  return most
end

describe("handler runs in flight", function()
  after_each(helpers.cleanup)

  it("start together while their events are small", function()
    assert.equals(8, most_at_once(10))
  end)

  it("wait their turn while the running ones hold 4 MiB of event data", function()
    -- 1.5 MB each: two fit under 4 MiB, a third does not.
    assert.equals(2, most_at_once(1500000))
  end)

  it("still run one at a time when a single event is larger than that", function()
    assert.equals(1, most_at_once(5000000))
  end)
end)
