-- SIGHUP reloads plugin.lua (contract sections 1 and 2): a script that fails
-- to load leaves the previous one in charge, and a good one takes over.
local helpers = require "spec.support.helpers"

local admin = helpers.admin

-- A plugin whose subscribed handler records the event under tag.
local function plugin(rec, tag)
  return helpers.recorder_plugin(rec) .. string.format([[
restock.subscribe("restock-notification.subscribed", function(data)
  record(%q, data.email)
end, { name = "mailer" })
]], tag)
end

-- Subscribes email and returns the tag of the handler that recorded it.
local function handled_by(server, rec, email)
  local res = helpers.request(server, "POST",
    "/restock-notifications/variants/v", { json = { email = email } })
  helpers.assert_status(res, 201)
  local found = helpers.wait_for(function()
    for _, r in ipairs(helpers.read_records(rec)) do
      if r.data == email then
        return r.tag
      end
    end
  end)
  assert.truthy(found, "no handler received " .. email .. "; stderr:\n"
    .. server:stderr())
  return found
end

local occurrences = helpers.occurrences

describe("SIGHUP", function()
  after_each(helpers.cleanup)

  it("keeps the old script when the new one is broken, then takes a good one",
    function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir, plugin = plugin(rec, "v1") }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)
      assert.equals("v1", handled_by(server, rec, "one@example.com"))

      -- A syntax error: the reload fails and says so.
      helpers.write_file(server.plugin_path, plugin(rec, "v2")
        .. "\nrestock.subscribe(\"x\", function( end\n")
      server:signal("HUP")
      local stderr = helpers.wait_for(function()
        local s = server:stderr()
        if s:find("reload:", 1, true)
            and s:find("keeping the previous script", 1, true) then
          return s
        end
      end)
      assert.truthy(stderr, "no failed-reload line:\n" .. server:stderr())
      local line = stderr:match("[^\n]*keeping the previous script[^\n]*")
      assert.truthy(line:find("reload:", 1, true), line)
      assert.truthy(line:find(server.plugin_path, 1, true)
        or line:find("plugin", 1, true), line)

      -- The old handlers still run, and the server still answers.
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
      assert.equals("v1", handled_by(server, rec, "two@example.com"))

      -- A good script takes over.
      local before = occurrences(server:stderr(), "reload:")
      helpers.write_file(server.plugin_path, plugin(rec, "v3"))
      server:signal("HUP")
      assert.truthy(helpers.wait_for(function()
        return occurrences(server:stderr(), "reload:") > before
      end), "no reload line after the second SIGHUP:\n" .. server:stderr())
      assert.equals(1, occurrences(server:stderr(),
        "keeping the previous script"))
      assert.equals("v3", handled_by(server, rec, "three@example.com"))

      -- Each subscription was handled exactly once, by one script.
      local tags = {}
      for _, r in ipairs(helpers.read_records(rec)) do
        tags[#tags + 1] = r.tag .. " " .. r.data
      end
      assert.same({ "v1 one@example.com", "v1 two@example.com",
        "v3 three@example.com" }, tags)
    end)

  it("keeps the old script when the new one raises while loading",
    function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir, plugin = plugin(rec, "v1") }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)

      helpers.write_file(server.plugin_path, plugin(rec, "v2")
        .. "\nrestock.options { no_such_option = 1 }\n")
      server:signal("HUP")
      assert.truthy(helpers.wait_stderr(server, "keeping the previous script"),
        "no failed-reload line:\n" .. server:stderr())
      assert.equals("v1", handled_by(server, rec, "one@example.com"))
    end)
end)
