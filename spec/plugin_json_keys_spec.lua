-- restock.json.encode and a table whose integer key and string key would
-- be one JSON key (issue 13): it fails naming the clash instead of
-- dropping one of the values, and so does restock.emit's data.
local helpers = require "spec.support.helpers"
local cjson = require "cjson"

local admin = helpers.admin

local HANDLER = [[
restock.subscribe("restock-notification.subscribed", function(data)
  local function try(f, ...)
    local ok, result = pcall(f, ...)
    return { ok = ok, result = tostring(result) }
  end
  record("clash", try(restock.json.encode, { [1] = 1, ["1"] = 2 }))
  record("nested", try(restock.json.encode,
    { a = { [-3] = "x", ["-3"] = "y" } }))
  record("fine", try(restock.json.encode, { [1] = "a", ["01"] = "b", x = 2 }))
  record("emit", try(restock.emit, "shop.clash", { [2] = "two", ["2"] = "deux" }))
end)
]]

describe("restock.json.encode", function()
  after_each(helpers.cleanup)

  it("refuses a table whose keys 1 and \"1\" clash, in a handler", function()
    local dir = helpers.tmpdir()
    local rec = dir .. "/records.jsonl"
    local server = helpers.start { dir = dir,
      plugin = helpers.recorder_plugin(rec) .. HANDLER }
    helpers.assert_status(admin(server, "POST", "/admin/variants",
      { id = "v", inventory_quantity = 0 }), 200)
    helpers.assert_status(helpers.request(server, "POST",
      "/restock-notifications/variants/v",
      { json = { email = "a@example.com" } }), 201)
    local records = helpers.wait_records(rec, "emit", 1)
    assert.truthy(records, "the handler recorded nothing")
    local got = {}
    for _, r in ipairs(helpers.read_records(rec)) do
      got[r.tag] = r.data
    end

    assert.is_false(got.clash.ok)
    assert.truthy(got.clash.result:find('both the key 1 and the key "1"', 1,
      true), got.clash.result)
    assert.is_false(got.nested.ok)
    assert.truthy(got.nested.result:find('both the key -3 and the key "-3"',
      1, true), got.nested.result)
    -- Keys that only look alike are kept, each with its value.
    assert.is_true(got.fine.ok)
    assert.same({ ["1"] = "a", ["01"] = "b", x = 2 },
      cjson.decode(got.fine.result))
    -- An event's data is refused the same way: no half of it is stored.
    assert.is_false(got.emit.ok)
    assert.truthy(got.emit.result:find('both the key 2 and the key "2"', 1,
      true), got.emit.result)
    assert.equals(0, helpers.events(server, { name = "shop.clash" }).count)
  end)
end)
