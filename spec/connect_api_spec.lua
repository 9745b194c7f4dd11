-- The connector API of the `restock` module (contract section 2):
-- restock.route, restock.every, restock.kv, restock.variants.upsert and
-- restock.inventory.*, against the real server.
local cjson = require "cjson"
local helpers = require "spec.support.helpers"

local function plugin(body, options)
  return 'local restock = require "restock"\n'
    .. "restock.options { " .. (options or "") .. " }\n" .. body
end

local function check(script)
  local dir = helpers.tmpdir()
  local path = dir .. "/plugin.lua"
  helpers.write_file(path, script)
  return helpers.run({ "check", "--config", path })
end

local function json_body(server, path, value)
  return helpers.request(server, "POST", path, { json = value })
end

describe("restock.route", function()
  after_each(helpers.cleanup)

  local ECHO = [[
restock.route("POST", "/hooks/echo", function(req)
  return 200, { method = req.method, path = req.path, query = req.query,
    headers = req.headers, body = restock.crypto.hex(req.body),
    remote_addr = req.remote_addr }
end)
restock.route("GET", "/hooks/text", function(req)
  return 201, "made", { ["X-Hook"] = "yes", ["Content-Type"] = "text/csv" }
end)
]]

  it("hands the raw request to the script and sends its answer", function()
    local server = helpers.start { plugin = plugin(ECHO) }
    -- No admin token: hook routes check their caller themselves.
    local body = "\0\1\255{\"not\": json"
    local res = helpers.request(server, "POST", "/hooks/echo?a=1&b=x%20y",
      { headers = { ["X-Custom-Thing"] = "Value 1",
        ["Content-Type"] = "application/octet-stream" }, body = body })
    helpers.assert_status(res, 200)
    assert.truthy(res.headers["content-type"]:find("application/json", 1,
      true))
    local j = res.json
    assert.equals("POST", j.method)
    assert.equals("/hooks/echo", j.path)
    assert.same({ a = "1", b = "x y" }, j.query)
    assert.equals("Value 1", j.headers["x-custom-thing"])
    assert.equals("application/octet-stream", j.headers["content-type"])
    assert.equals("0001ff7b226e6f74223a206a736f6e", j.body)
    assert.equals("127.0.0.1", j.remote_addr)

    res = helpers.request(server, "GET", "/hooks/text")
    helpers.assert_status(res, 201)
    assert.equals("made", res.body)
    assert.equals("yes", res.headers["x-hook"])
    assert.equals("text/csv", res.headers["content-type"])
  end)

  it("answers 405 for another method and 404 for a path it lacks", function()
    local server = helpers.start { plugin = plugin(ECHO) }
    local res = helpers.request(server, "GET", "/hooks/echo")
    helpers.assert_error(res, 405, "not_allowed")
    assert.equals("POST", res.headers["allow"])
    helpers.assert_error(helpers.request(server, "POST", "/hooks/other"), 404,
      "not_found")
    helpers.assert_error(helpers.request(server, "POST", "/hooks/echo/x"),
      404, "not_found")
  end)

  it("answers bad input with a clear error and stays healthy", function()
    local server = helpers.start { plugin = plugin([[
local calls = 0
restock.route("POST", "/hooks/json", function(req)
  calls = calls + 1
  local v, err = restock.json.decode(req.body)
  if type(v) ~= "table" then
    return 400, { type = "invalid_data", message = err or "not an object" }
  end
  return 200, { calls = calls, got = v }
end)
restock.route("POST", "/hooks/boom", function() error("boom in the hook") end)
restock.route("POST", "/hooks/slow", function() restock.sleep(10000) return 200 end)
restock.route("POST", "/hooks/spin", function() while true do end end)
restock.route("POST", "/hooks/status", function() return "yes" end)
restock.route("POST", "/hooks/fn", function() return 200, print end)
]], "handler_timeout = 300") }
    -- Over 1 MiB: refused before the script sees it.
    local big = string.rep("x", 1024 * 1024 + 1)
    helpers.assert_error(helpers.request(server, "POST", "/hooks/json",
      { body = big }), 413, "payload_too_large")
    local res = helpers.request(server, "POST", "/hooks/json",
      { body = "{not json" })
    helpers.assert_error(res, 400, "invalid_data")
    assert.truthy(res.json.message:find("invalid JSON", 1, true))
    -- An error: 500, logged with its message; the caller gets no traceback.
    res = helpers.request(server, "POST", "/hooks/boom", { body = "{}" })
    helpers.assert_error(res, 500, "unexpected_state")
    assert.falsy(res.body:find("boom", 1, true))
    assert.truthy(helpers.wait_stderr(server, "boom in the hook"))
    -- Past handler_timeout, waiting or computing: 503.
    helpers.assert_error(helpers.request(server, "POST", "/hooks/slow",
      { body = "{}" }), 503, "unexpected_state")
    helpers.assert_error(helpers.request(server, "POST", "/hooks/spin",
      { body = "{}" }), 503, "unexpected_state")
    -- Answers the server cannot send.
    helpers.assert_error(helpers.request(server, "POST", "/hooks/status"),
      500, "unexpected_state")
    helpers.assert_error(helpers.request(server, "POST", "/hooks/fn"), 500,
      "unexpected_state")
    assert.truthy(helpers.wait_stderr(server, "instead of a status"))
    -- Still healthy, and the route still works (once per good request: the
    -- refused body never reached it).
    helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
    res = json_body(server, "/hooks/json", { n = 1 })
    helpers.assert_status(res, 200)
    assert.equals(2, res.json.calls)
    assert.same({ n = 1 }, res.json.got)
  end)

  it("takes routes under /hooks/ only, while the script loads", function()
    for _, bad in ipairs { '"/admin/x"', '"/hooks/"', '"/hooks/a/../b"',
      '"/hooks//a"', '"/hooks/a b"', '"/hooks/a?x=1"', '"hooks/a"' } do
      local rc, _, stderr = check(plugin(
        "restock.route('POST', " .. bad .. ", function() end)\n"))
      assert.equals(2, rc, bad .. ": " .. stderr)
      assert.truthy(stderr:find("/hooks/", 1, true), stderr)
    end
    local rc, _, stderr = check(plugin([[
restock.route("POST", "/hooks/a", function() end)
restock.route("POST", "/hooks/a", function() end)
]]))
    assert.equals(2, rc)
    assert.truthy(stderr:find("already routed", 1, true), stderr)
    rc, _, stderr = check(plugin(
      "restock.route('post', '/hooks/a', function() end)\n"))
    assert.equals(2, rc)
    assert.truthy(stderr:find("upper-case", 1, true), stderr)
    local server = helpers.start { plugin = plugin([[
restock.route("POST", "/hooks/late", function()
  local ok, err = pcall(restock.route, "GET", "/hooks/later", function() end)
  return 200, { ok = ok, err = err }
end)
]]) }
    local res = helpers.request(server, "POST", "/hooks/late")
    helpers.assert_status(res, 200)
    assert.is_false(res.json.ok)
    assert.truthy(res.json.err:find("while plugin.lua loads", 1, true))
  end)
end)

describe("restock.every", function()
  after_each(helpers.cleanup)

  it("runs a task ms after its last run ended, never two at once", function()
    local dir = helpers.tmpdir()
    local record = dir .. "/runs"
    local server = helpers.start { dir = dir, plugin = plugin(
      helpers.recorder_plugin(record) .. [[
local n = 0
restock.every(20, function()
  n = n + 1
  local mine = n
  record("start", mine)
  restock.sleep(60) -- longer than the interval
  record("end", mine)
end)
]]) }
    local recs = helpers.wait_records(record, nil, 10, 10)
    assert.truthy(recs, "the task did not run five times\n" .. server:stderr())
    -- start 1, end 1, start 2, end 2, ...: a run starts after the last one
    -- ended, whatever the interval.
    for i, r in ipairs(recs) do
      assert.equals(i % 2 == 1 and "start" or "end", r.tag)
      assert.equals((i + 1) // 2, r.data)
    end
  end)

  it("goes on after a run fails or times out", function()
    local dir = helpers.tmpdir()
    local record = dir .. "/runs"
    local server = helpers.start { dir = dir, plugin = plugin(
      helpers.recorder_plugin(record) .. [[
local n = 0
restock.every(20, function()
  n = n + 1
  record("run", n)
  if n == 1 then error("first run fails") end
  if n == 2 then return nil, "second run says no" end
  if n == 3 then restock.sleep(5000) end
end, { name = "flaky" })
]], "handler_timeout = 200") }
    local recs = helpers.wait_records(record, "run", 5, 10)
    assert.truthy(recs, "the task stopped running\n" .. server:stderr())
    local err = server:stderr()
    assert.truthy(err:find("periodic task flaky failed: .*first run fails"),
      err)
    assert.truthy(err:find("periodic task flaky failed: second run says no",
      1, true), err)
    assert.truthy(err:find("periodic task flaky timed out", 1, true), err)
  end)

  it("holds a lease row for a named task", function()
    local dir = helpers.tmpdir()
    local record = dir .. "/runs"
    local server = helpers.start { dir = dir, plugin = plugin(
      helpers.recorder_plugin(record) .. [[
restock.every(50, function() record("run", 1) end, { name = "sync" })
restock.every(50, function() record("anon", 1) end)
]]) }
    assert.truthy(helpers.wait_records(record, "run", 2, 10))
    assert.truthy(helpers.wait_records(record, "anon", 2, 10))
    local rows = helpers.sql(server.db, string.format(
      "SELECT name, owner, CASE WHEN lease_until > %d THEN 1 ELSE 0 END"
      .. " FROM task_leases", os.time() * 1000))
    -- Only the named task takes a lease, in this node's name: an unnamed
    -- one runs on every node.
    local node = helpers.admin(server, "GET", "/admin/nodes").json.nodes[1].id
    assert.equals("sync|" .. node .. "|1", rows)
  end)

  it("refuses bad intervals, unknown options and duplicate names", function()
    local cases = {
      { "restock.every(5, function() end)", "10 to 30 days" },
      { "restock.every(1.5, function() end)", "number has no integer" },
      { "restock.every(100, function() end, { nmae = 'x' })", "unknown option" },
      { "restock.every(100, function() end, { name = 'a' })\n"
        .. "restock.every(100, function() end, { name = 'a' })",
        "already exists" },
    }
    for _, c in ipairs(cases) do
      local rc, _, stderr = check(plugin(c[1] .. "\n"))
      assert.equals(2, rc, c[1])
      assert.truthy(stderr:find(c[2], 1, true), c[1] .. ": " .. stderr)
    end
  end)
end)

describe("restock.kv", function()
  after_each(helpers.cleanup)

  local KV = [[
restock.route("POST", "/hooks/kv", function(req)
  local r = restock.json.decode(req.body)
  local value = r.value
  if value == restock.json.null then value = nil end
  -- JSON text holds neither a NUL byte nor bytes that are not UTF-8.
  if r.nul_key then r.key = "nul\0key" end
  if r.bad_utf8 then value = "bad\255utf8" end
  if r.op == "set" then
    local ok, a, b = pcall(restock.kv.set, r.key, value,
      r.ttl and { ttl = r.ttl } or nil)
    if not ok then return 400, { error = a } end
    return 200, { ok = a, err = b }
  end
  local ok, v, err = pcall(restock.kv.get, r.key)
  if not ok then return 400, { error = v } end
  return 200, { value = v == nil and restock.json.null or v, err = err }
end)
]]

  local function kv(server, body)
    local res = json_body(server, "/hooks/kv", body)
    return res
  end

  it("keeps strings across a restart, deletes on nil, expires ttl", function()
    local dir = helpers.tmpdir()
    local server = helpers.start { dir = dir, plugin = plugin(KV) }
    helpers.assert_status(kv(server, { op = "set", key = "cursor",
      value = "2026-03-01T10:00:00Z" }), 200)
    helpers.assert_status(kv(server, { op = "set", key = "gone",
      value = "x" }), 200)
    local res = kv(server, { op = "get", key = "cursor" })
    assert.equals("2026-03-01T10:00:00Z", res.json.value)
    assert.equals(cjson.null, kv(server, { op = "get", key = "none" }).json
      .value)
    server:stop()
    server = helpers.start { dir = dir, no_migrate = true, plugin = plugin(KV) }
    assert.equals("2026-03-01T10:00:00Z", kv(server, { op = "get",
      key = "cursor" }).json.value)
    helpers.assert_status(kv(server, { op = "set", key = "gone",
      value = cjson.null }), 200)
    assert.equals(cjson.null, kv(server, { op = "get", key = "gone" }).json
      .value)
    helpers.assert_status(kv(server, { op = "set", key = "short",
      value = "lived", ttl = 100 }), 200)
    assert.truthy(helpers.wait_for(function()
      return kv(server, { op = "get", key = "short" }).json.value == cjson.null
    end, 5), "a value with a ttl of 100 ms did not expire")
  end)

  it("bounds keys and values", function()
    local server = helpers.start { plugin = plugin(KV) }
    local max = string.rep("v", 64 * 1024)
    helpers.assert_status(kv(server, { op = "set", key = "big", value = max }),
      200)
    assert.equals(max, kv(server, { op = "get", key = "big" }).json.value)
    local res = kv(server, { op = "set", key = "big", value = max .. "v" })
    helpers.assert_status(res, 400)
    assert.truthy(res.json.error:find("65536", 1, true), res.body)
    res = kv(server, { op = "set", key = string.rep("k", 256), value = "v" })
    helpers.assert_status(res, 400)
    assert.truthy(res.json.error:find("255", 1, true), res.body)
    helpers.assert_status(kv(server, { op = "set", key = "", value = "v" }),
      400)
    helpers.assert_status(kv(server, { op = "set", nul_key = true,
      value = "v" }), 400)
    helpers.assert_status(kv(server, { op = "set", key = "k",
      bad_utf8 = true }), 400)
    helpers.assert_status(kv(server, { op = "set", key = "k", value = "v",
      ttl = 0 }), 400)
  end)

  it("cannot be called while the script loads", function()
    local rc, _, stderr = check(plugin('restock.kv.get("x")\n'))
    assert.equals(2, rc)
    assert.truthy(stderr:find("cannot be called while plugin.lua loads", 1,
      true), stderr)
  end)
end)

describe("restock.variants.upsert and restock.inventory", function()
  after_each(helpers.cleanup)

  local CALLS = [[
restock.route("POST", "/hooks/call", function(req)
  local r = restock.json.decode(req.body)
  local a, b
  if r.call == "upsert" then
    a, b = restock.variants.upsert(r.arg)
  elseif r.call == "set" then
    a, b = restock.inventory.set(r.arg[1], r.arg[2])
  elseif r.call == "set_level" then
    a, b = restock.inventory.set_level(r.arg)
  end
  return 200, { result = a == nil and restock.json.null or a, err = b }
end)
]]

  local function call(server, name, arg)
    local res = json_body(server, "/hooks/call", { call = name, arg = arg })
    helpers.assert_status(res, 200)
    return res.json
  end

  it("run the admin routes' use-cases, effects included", function()
    local server = helpers.start { plugin = plugin(CALLS) }
    local r = call(server, "upsert", { id = "v1", title = "Shirt",
      inventory_quantity = 0 })
    assert.equals("v1", r.result.id)
    assert.equals("Shirt", r.result.title)
    assert.equals(0, r.result.quantity)
    r = call(server, "upsert", { variants = { { id = "v2" }, { id = "v3",
      manage_inventory = false } } })
    assert.equals(2, #r.result)
    assert.equals("v3", r.result[2].id)
    assert.is_false(r.result[2].manage_inventory)
    -- The use-case's own messages.
    r = call(server, "upsert", { id = "v1", colour = "red" })
    assert.equals(cjson.null, r.result)
    assert.truthy(r.err:find("unknown field 'colour'", 1, true), r.err)
    r = call(server, "set", { "nope", 3 })
    assert.equals("Variant with id: nope was not found", r.err)
    -- A restock through the Lua API notifies as the admin route does.
    helpers.assert_status(helpers.request(server, "POST",
      "/restock-notifications/variants/v1",
      { json = { email = "ann@example.com" } }), 201)
    r = call(server, "set", { "v1", 4 })
    assert.is_true(r.result)
    local events = helpers.wait_for(function()
      local list = helpers.events(server,
        { name = "restock-notification.restocked" }).events
      return #list > 0 and list
    end, 10)
    assert.truthy(events, "no restocked event\n" .. server:stderr())
    assert.same({ "ann@example.com" }, events[1].data.emails)
  end)

  it("set_level creates an unknown location and sums the levels", function()
    local server = helpers.start { plugin = plugin(CALLS) }
    call(server, "upsert", { id = "mw" })
    local r = call(server, "set_level", { variant_id = "mw",
      location_id = "loc-east", stocked_quantity = 7, reserved_quantity = 2 })
    assert.is_true(r.result)
    r = call(server, "set_level", { variant_id = "mw", location_id = "loc-west",
      stocked_quantity = 1 })
    assert.is_true(r.result)
    local res = helpers.admin(server, "GET", "/admin/variants/mw")
    helpers.assert_status(res, 200)
    assert.equals(6, res.json.variant.quantity)
    res = helpers.admin(server, "GET", "/admin/stock-locations")
    local ids = {}
    for _, l in ipairs(res.json.stock_locations) do
      ids[#ids + 1] = l.id
    end
    table.sort(ids)
    assert.same({ "loc-east", "loc-west" }, ids)
    r = call(server, "set_level", { variant_id = "mw", stocked_quantity = 1 })
    assert.equals("location_id is required: a stock location's id", r.err)
    r = call(server, "set_level", { variant_id = "mw", location_id = "x",
      stocked_quantity = -1 })
    assert.truthy(r.err:find("stocked_quantity must be", 1, true), r.err)
  end)
end)
