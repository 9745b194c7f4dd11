-- docs/subscribers.md's option table against the options `restockd check`
-- prints (read off the one table in core/config.c): every option is
-- documented, with its default, and the docs name no option that is not.
local helpers = require "spec.support.helpers"
local cjson = require "cjson"

describe("docs/subscribers.md's options", function()
  after_each(helpers.cleanup)

  it("lists every option with its default, and no other", function()
    local dir = helpers.tmpdir()
    local path = dir .. "/plugin.lua"
    local f = assert(io.open(path, "w"))
    f:write('local restock = require "restock"\nrestock.options {}\n')
    f:close()
    local rc, out, err = helpers.run({ "check", "--config", path })
    assert.equals(0, rc, err)
    local options = cjson.decode(out)
    local doc = assert(io.open("docs/subscribers.md")):read("a")
    local table_text = doc:match("\n## Options\n(.-)\n\n")
    assert.truthy(table_text, "no option table under ## Options")
    local documented = {}
    for name, default in table_text:gmatch("\n| `([%w_]+)` | [^\n]* | ([^|\n]+) |") do
      documented[name] = default
    end
    for name, value in pairs(options) do
      local d = documented[name]
      assert.truthy(d, "option " .. name .. " is not in docs/subscribers.md")
      local shown
      if value == cjson.null then
        shown = "none"
      elseif type(value) == "string" then
        shown = '`"' .. value .. '"`'
      elseif type(value) == "number" and value == math.floor(value) then
        shown = string.format("%d", value)
      else
        shown = tostring(value)
      end
      assert.truthy(d:find(shown, 1, true) or (value == 0 and d:find("^0")),
        string.format("option %s: the docs say %q, check says %s", name, d,
          shown))
    end
    for name in pairs(documented) do
      assert.truthy(options[name] ~= nil,
        "docs/subscribers.md documents " .. name .. ", which is no option")
    end
  end)
end)
