-- What a runaway script, a bad option and a bad database did to the server
-- (issue 13): a memory ceiling for the Lua state, a watchdog for what
-- handler_timeout cannot reach, to-be-closed variables closed when a
-- handler fails, options with upper bounds, sums that cannot overflow, and
-- a read-only database refused at start.
local helpers = require "spec.support.helpers"
local socket = require "socket"
local cjson = require "cjson"
local lfs = require "lfs"

local admin = helpers.admin
local RESTOCKED = "restock-notification.restocked"

local function restock_one(server)
  helpers.assert_status(admin(server, "POST", "/admin/variants",
    { id = "v", inventory_quantity = 0 }), 200)
  helpers.assert_status(helpers.request(server, "POST",
    "/restock-notifications/variants/v",
    { json = { email = "ann@example.com" } }), 201)
  helpers.assert_status(admin(server, "POST", "/admin/variants/v",
    { inventory_quantity = 3 }), 200)
end

local function dead_event(server, timeout)
  return helpers.wait_for(function()
    local j = helpers.events(server, { name = RESTOCKED, status = "dead" })
    return j.events[1]
  end, timeout or 10)
end

describe("the Lua state's memory", function()
  after_each(helpers.cleanup)

  it("has a ceiling: a handler allocating without end fails, and the "
    .. "server goes on", function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir,
        plugin = helpers.recorder_plugin(rec) .. [[
restock.options { lua_memory_limit = 32, max_attempts = 1 }
restock.subscribe("restock-notification.restocked", function()
  local t = {}
  for i = 1, math.huge do t[i] = string.rep("x", 1000) .. i end
end, { name = "hog" })
restock.subscribe("restock-notification.restocked", function(data)
  record("after", data.variant_id)
end, { name = "witness" })
]] }
      restock_one(server)
      local ev = dead_event(server)
      assert.truthy(ev, "the hog did not fail; stderr:\n" .. server:stderr())
      local hog
      for _, d in ipairs(ev.deliveries) do
        if d.handler == "hog" then hog = d end
      end
      assert.truthy(hog.last_error:find("not enough memory", 1, true),
        hog.last_error)
      assert.truthy(hog.last_error:find("lua_memory_limit", 1, true))
      assert.truthy(helpers.wait_records(rec, "after", 1))
      -- The garbage was collected, and the server answers as before.
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
      helpers.assert_status(admin(server, "GET", "/admin/events?limit=5"), 200)
      local m = helpers.request(server, "GET", "/metrics").body
      local rss = tonumber(m:match("process_resident_memory_bytes (%d+)"))
      assert.truthy(rss < 256 * 1048576, "resident memory " .. rss)
    end)

  it("refuses a limit out of its bounds", function()
    local path = helpers.tmpdir() .. "/plugin.lua"
    helpers.write_file(path,
      'require("restock").options { lua_memory_limit = 4 }\n')
    local rc, _, err = helpers.run({ "check", "--config", path })
    assert.equals(2, rc)
    assert.truthy(err:find("lua_memory_limit", 1, true), err)
  end)
end)

describe("the watchdog", function()
  after_each(helpers.cleanup)

  local function hung_server(dir, body)
    local plugin = 'local restock = require "restock"\n' .. [[
restock.options { handler_timeout = 1000 }
restock.subscribe("restock-notification.restocked", function()
]] .. body .. [[
end, { name = "stuck" })
]]
    return helpers.start { dir = dir, plugin = plugin,
      env = { RESTOCK_WATCHDOG = "1500" } }
  end

  for name, body in pairs {
    ["a long pattern match"] =
      '  return string.rep("a", 30000):find(".-.-.-.-b")\n',
    ["an endless finalizer"] =
      '  setmetatable({}, { __gc = function() while true do end end })\n'
      .. '  collectgarbage()\n',
  } do
    it("ends a process held by " .. name .. ", naming the handler, and its "
      .. "delivery does not run again", function()
        local dir = helpers.tmpdir()
        local server = hung_server(dir, body)
        restock_one(server)
        local rc = server:wait_exit(20)
        server.stopped_by_test = true
        assert.truthy(rc, "the process is still held")
        assert.equals(1, rc)
        local err = server:stderr()
        assert.truthy(err:find("watchdog: the event loop has been held", 1,
          true), err)
        assert.truthy(err:find("to stuck", 1, true), err)
        -- After the restart the delivery is dead: it holds nobody again.
        local again = helpers.start { dir = dir, db = server.db,
          plugin = 'require("restock").subscribe('
            .. '"restock-notification.restocked", function() end, '
            .. '{ name = "stuck" })\n' }
        local ev = dead_event(again, 5)
        assert.truthy(ev, "the delivery was not marked dead")
        assert.truthy(ev.deliveries[1].last_error:find("held the event loop",
          1, true), ev.deliveries[1].last_error)
      end)
  end

  it("makes SIGTERM's grace period hold whatever a handler does", function()
    if helpers.under_tsan() then
      -- ThreadSanitizer holds an asynchronous signal until the thread that
      -- took it calls into the C library, which a loop spinning in Lua
      -- never does: the watchdog is never told. Nothing to learn there.
      pending("not under ThreadSanitizer: it defers signals")
      return
    end
    local server = hung_server(helpers.tmpdir(),
      '  while true do end\n')
    -- handler_timeout stops this one; a finalizer is what holds the loop.
    server:stop()
    local plugin_dir = helpers.tmpdir()
    local held = helpers.start { dir = plugin_dir,
      plugin = 'local restock = require "restock"\n'
        .. 'restock.subscribe("restock-notification.restocked", function()\n'
        .. '  setmetatable({}, { __gc = function() while true do end end })\n'
        .. '  collectgarbage()\nend)\n',
      env = { RESTOCK_WATCHDOG = "600000" } }
    restock_one(held)
    socket.sleep(0.5)
    local t0 = socket.gettime()
    held:signal("TERM")
    local rc = held:wait_exit(20)
    local took = socket.gettime() - t0
    assert.truthy(rc, "SIGTERM did not end a held process")
    assert.equals(0, rc)
    assert.truthy(took < 14, string.format("it took %.1f s", took))
    assert.truthy(held:stderr():find("after the stop signal", 1, true),
      held:stderr())
    held.stopped_by_test = true
  end)
end)

describe("to-be-closed variables", function()
  after_each(helpers.cleanup)

  it("are closed when a handler fails", function()
    local dir = helpers.tmpdir()
    local rec = dir .. "/records.jsonl"
    local server = helpers.start { dir = dir,
      plugin = helpers.recorder_plugin(rec) .. [[
restock.options { max_attempts = 1 }
restock.subscribe("restock-notification.restocked", function()
  local guard <close> = setmetatable({}, {
    __close = function() record("closed", true) end })
  restock.sleep(10)
  error("the handler failed")
end, { name = "guarded" })
]] }
    restock_one(server)
    assert.truthy(dead_event(server))
    assert.truthy(helpers.wait_records(rec, "closed", 1),
      "the to-be-closed variable was never closed")
  end)
end)

describe("option bounds", function()
  for _, name in ipairs { "trigger_delay", "handler_timeout",
      "notify_interval", "batch_size", "max_attempts", "inventory_required",
      "subscribe_rate_limit" } do
    it("refuses math.maxinteger for " .. name, function()
      local path = helpers.tmpdir() .. "/plugin.lua"
      helpers.write_file(path, string.format(
        'require("restock").options { %s = math.maxinteger }\n', name))
      local rc, _, err = helpers.run({ "check", "--config", path })
      assert.equals(2, rc)
      assert.truthy(err:find(name, 1, true), err)
      assert.truthy(err:find("from", 1, true), err)
    end)
  end
  after_each(helpers.cleanup)
end)

describe("quantities", function()
  after_each(helpers.cleanup)

  it("answer 400 naming the field for levels whose sum would overflow",
    function()
      local server = helpers.start()
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v" }), 200)
      for _, l in ipairs { "a", "b" } do
        helpers.assert_status(admin(server, "POST", "/admin/stock-locations",
          { id = l }), 200)
      end
      local res = admin(server, "POST", "/admin/inventory-levels",
        '{"variant_id": "v", "location_id": "a", "stocked_quantity": '
          .. "9223372036854775807}")
      helpers.assert_error(res, 400, "invalid_data")
      assert.truthy(res.json.message:find("stocked_quantity", 1, true))
      -- Two levels of 2^63-1 in one batch: refused at the first, by name.
      res = admin(server, "POST", "/admin/inventory/batch",
        '{"updates": [{"variant_id": "v", "location_id": "a", '
          .. '"stocked_quantity": 9223372036854775807}, {"variant_id": "v", '
          .. '"location_id": "b", "stocked_quantity": 9223372036854775807}]}')
      helpers.assert_error(res, 400, "invalid_data")
      assert.truthy(res.json.message:find("updates[0]: stocked_quantity", 1,
        true), res.json.message)
      assert.equals(0, admin(server, "GET",
        "/admin/variants/v").json.variant.quantity)
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
    end)
end)

describe("a read-only database", function()
  after_each(helpers.cleanup)

  it("is refused at start with exit 1 saying why", function()
    if not os.execute("command -v setpriv >/dev/null 2>&1") then
      pending("setpriv is needed to run as another user")
      return
    end
    local dir = helpers.tmpdir()
    local db = dir .. "/restock.db"
    local rc, _, err = helpers.run({ "migrations", "run", "--db", db })
    assert.equals(0, rc, err)
    helpers.write_file(dir .. "/plugin.lua", 'require("restock")\n')
    -- Readable by everyone, writable by root only; the server runs as
    -- nobody (root could write to any file).
    os.execute("chmod 755 " .. dir .. "; chmod 644 " .. db .. "; chmod 666 "
      .. db .. ".lock 2>/dev/null; touch " .. db .. ".lock; chmod 666 " .. db
      .. ".lock")
    local cmd = string.format(
      "cd %s && setpriv --reuid=65534 --regid=65534 --clear-groups env -u "
      .. "RESTOCK_DB %s start --db %s --config %s/plugin.lua --port 0 "
      .. ">%s/out 2>%s/err </dev/null; echo $? >%s/rc",
      dir, helpers.binary():sub(1, 1) == "/" and helpers.binary()
        or (require("lfs").currentdir() .. "/" .. helpers.binary()),
      db, dir, dir, dir, dir)
    os.execute("chmod 755 " .. require("lfs").currentdir() .. " 2>/dev/null")
    os.execute(cmd)
    local code = tonumber(helpers.read_file(dir .. "/rc"))
    local stderr = helpers.read_file(dir .. "/err") or ""
    assert.equals(1, code, stderr)
    assert.truthy(stderr:find("read-only", 1, true)
      or stderr:find("readonly", 1, true), stderr)
    assert.falsy((helpers.read_file(dir .. "/out") or ""):find("listening"))
  end)
end)

-- Out of threads at start-up (issue 13): a process that cannot create a
-- thread it needs exits 1 saying so, with its log written; it never
-- aborts. spec/support/fail_threads.c (LD_PRELOAD) lets the first N
-- pthread_create calls through and fails the rest with EAGAIN, as the
-- kernel does at a thread limit; every N up to the one that starts is
-- tried, so each thread start-up makes on its way is failed once.
describe("a process out of threads", function()
  after_each(helpers.cleanup)

  it("exits 1 saying which threads it could not start, never aborting",
    function()
      local shim = lfs.currentdir() .. "/build/test/fail_threads.so"
      if not lfs.attributes(shim) then
        pending("build/test/fail_threads.so is built by make test")
        return
      end
      local dir = helpers.tmpdir()
      local db = dir .. "/restock.db"
      local rc, _, err = helpers.run({ "migrations", "run", "--db", db })
      assert.equals(0, rc, err)
      helpers.write_file(dir .. "/plugin.lua", 'require("restock")\n')
      local asan = (os.getenv("ASAN_OPTIONS")
        or "detect_leaks=1:abort_on_error=0:halt_on_error=1")
        .. ":verify_asan_link_order=0"
      local storage_refused, started = false, false
      for n = 0, 12 do
        local out = dir .. "/out" .. n
        os.execute(string.format(
          "cd %s && env -u RESTOCK_DB ASAN_OPTIONS=%s LD_PRELOAD=%s "
          .. "RESTOCK_TEST_THREADS=%d RESTOCK_ADMIN_TOKEN=t0123456789abcdef "
          .. "timeout -s TERM 4 %s start --db %s --config plugin.lua "
          .. "--port 0 >%s 2>&1 </dev/null; echo $? >%s.rc",
          helpers.shquote(dir), helpers.shquote(asan), helpers.shquote(shim),
          n, helpers.shquote(helpers.binary():sub(1, 1) == "/"
            and helpers.binary()
            or (lfs.currentdir() .. "/" .. helpers.binary())),
          helpers.shquote(db), helpers.shquote(out), helpers.shquote(out)))
        local code = tonumber(helpers.read_file(out .. ".rc"))
        local text = helpers.read_file(out) or ""
        assert.is_nil(text:find("Sanitizer", 1, true), text)
        if code == 124 or text:find("listening", 1, true) then
          -- Enough threads: it served (and TERM stopped it).
          started = true
          break
        end
        assert.equals(1, code, "with " .. n .. " threads:\n" .. text)
        assert.truthy(text:find("thread", 1, true),
          "with " .. n .. " threads it did not say why:\n" .. text)
        if text:find("cannot start the storage threads", 1, true) then
          storage_refused = true
        end
      end
      assert.truthy(storage_refused,
        "no thread count reached the storage threads")
      assert.truthy(started, "it never started, even with 12 threads")
    end)
end)
