-- Event delivery to Lua handlers (contract sections 2 and 3): retries with
-- backoff, dead deliveries and their requeue through the admin API, the
-- handler timeout (also for an endless loop, while the server keeps
-- answering), restock.emit, restock.sleep and `return nil, err`.
local helpers = require "spec.support.helpers"
local socket = require "socket"

local admin = helpers.admin

local RESTOCKED = "restock-notification.restocked"
local SUBSCRIBED = "restock-notification.subscribed"

local function subscribe(server, variant_id, email)
  local res = helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { json = { email = email } })
  helpers.assert_status(res, 201)
end

-- Creates sold-out variant v, subscribes one email and raises its stock,
-- which writes one restocked event.
local function restock_one(server)
  helpers.assert_status(admin(server, "POST", "/admin/variants",
    { id = "v", inventory_quantity = 0 }), 200)
  subscribe(server, "v", "ann@example.com")
  helpers.assert_status(admin(server, "POST", "/admin/variants/v",
    { inventory_quantity = 5 }), 200)
end

-- Polls /admin/events until the only event named name has the status, and
-- returns it.
local function wait_event(server, name, status, timeout)
  return helpers.wait_for(function()
    local j = helpers.events(server, { name = name })
    if j.count >= 1 and j.events[1].status == status then
      return j.events[1]
    end
  end, timeout)
end

local function describe_events(server, name)
  return helpers.admin(server, "GET", "/admin/events"
    .. helpers.query({ name = name })).body
end

-- The whole stderr line that contains text (plain), or nil.
local function line_with(stderr, text)
  local i = stderr:find(text, 1, true)
  if not i then
    return nil
  end
  return stderr:sub(1, i - 1):match("[^\n]*$") .. stderr:sub(i):match("^[^\n]*")
end

describe("event delivery", function()
  after_each(helpers.cleanup)

  describe("retries", function()
    it("delivers once after a failed first attempt", function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir,
        plugin = helpers.recorder_plugin(rec) .. string.format([[
local COUNT_PATH = %q
restock.subscribe("restock-notification.restocked", function(data)
  local f = io.open(COUNT_PATH, "r")
  local n = f and tonumber(f:read("a")) or 0
  if f then f:close() end
  n = n + 1
  f = assert(io.open(COUNT_PATH, "w"))
  f:write(tostring(n))
  f:close()
  if n == 1 then error("first attempt fails") end
  record("restocked", data)
end, { name = "mailer", max_attempts = 3 })
]], dir .. "/count") }
      local t0 = socket.gettime()
      restock_one(server)

      local recs = helpers.wait_records(rec, "restocked", 1, 6)
      assert.truthy(recs, "not delivered after a retry; stderr:\n"
        .. server:stderr())
      assert.truthy(socket.gettime() - t0 >= 0.9,
        "the retry came sooner than the 1 s backoff")
      assert.same({ "ann@example.com" }, recs[1].data.emails)

      local ev = wait_event(server, RESTOCKED, "delivered")
      assert.truthy(ev, describe_events(server, RESTOCKED))
      assert.equals(2, ev.attempts)
      assert.equals(1, #ev.deliveries)
      local d = ev.deliveries[1]
      assert.equals("mailer", d.handler)
      assert.equals("delivered", d.status)
      assert.equals(2, d.attempts)
      assert.equals(3, d.max_attempts)

      local stderr = server:stderr()
      local warn = string.format("delivery of %s #%s to mailer failed "
        .. "(attempt 1 of 3), retrying in 1000 ms: ", RESTOCKED,
        math.tointeger(ev.id))
      local line = line_with(stderr, warn)
      assert.truthy(line, "no line with " .. warn .. " in:\n" .. stderr)
      assert.truthy(line:find("WARN", 1, true), line)
      assert.truthy(line:find("first attempt fails", 1, true), line)

      socket.sleep(0.3)
      assert.equals(1, #helpers.read_records(rec, "restocked"))
      assert.equals("2", helpers.read_file(dir .. "/count"))
    end)

    it("marks a delivery dead after max_attempts and requeues it on retry",
      function()
        local dir = helpers.tmpdir()
        local rec = dir .. "/records.jsonl"
        local server = helpers.start { dir = dir,
          plugin = helpers.recorder_plugin(rec) .. [[
restock.options { max_attempts = 2 }
restock.subscribe("restock-notification.restocked", function(data)
  record("attempt", data)
  error("smtp is down")
end, { name = "mailer" })
]] }
        restock_one(server)

        local ev = wait_event(server, RESTOCKED, "dead", 6)
        assert.truthy(ev, describe_events(server, RESTOCKED))
        assert.equals(2, #helpers.read_records(rec, "attempt"))
        local d = ev.deliveries[1]
        assert.equals("mailer", d.handler)
        assert.equals("dead", d.status)
        assert.equals(2, d.attempts)
        assert.equals(2, d.max_attempts)
        assert.truthy(type(d.last_error) == "string"
          and d.last_error:find("smtp is down", 1, true), d.last_error)
        assert.truthy(type(ev.last_error) == "string"
          and ev.last_error:find("smtp is down", 1, true), ev.last_error)
        local dead = helpers.events(server, { status = "dead" })
        assert.equals(1, dead.count)
        assert.equals(ev.id, dead.events[1].id)

        local stderr = server:stderr()
        local warn = string.format("delivery of %s #%s to mailer failed "
          .. "(attempt 1 of 2), retrying in 1000 ms: ", RESTOCKED,
          math.tointeger(ev.id))
        local err = string.format("delivery of %s #%s to mailer is dead "
          .. "after 2 attempts: ", RESTOCKED, math.tointeger(ev.id))
        local wi = stderr:find(warn, 1, true)
        local ei = stderr:find(err, 1, true)
        assert.truthy(wi, "no WARN line " .. warn .. " in:\n" .. stderr)
        assert.truthy(ei, "no ERROR line " .. err .. " in:\n" .. stderr)
        assert.truthy(wi < ei, "the ERROR line came before the WARN line")
        local wl, el = line_with(stderr, warn), line_with(stderr, err)
        assert.truthy(wl:find("WARN", 1, true), wl)
        assert.truthy(wl:find("smtp is down", 1, true), wl)
        assert.truthy(el:find("ERROR", 1, true), el)
        assert.truthy(el:find("smtp is down", 1, true), el)

        -- Fix the handler, reload, and requeue the dead delivery.
        helpers.write_file(server.plugin_path, helpers.recorder_plugin(rec)
          .. [[
restock.options { max_attempts = 2 }
restock.subscribe("restock-notification.restocked", function(data)
  record("restocked", data)
end, { name = "mailer" })
]])
        server:signal("HUP")
        assert.truthy(helpers.wait_stderr(server, "reload:"),
          "no reload line:\n" .. server:stderr())
        assert.falsy(server:stderr():find("keeping the previous script", 1,
          true), server:stderr())

        local res = admin(server, "POST", "/admin/events/" .. math.tointeger(ev.id)
          .. "/retry")
        helpers.assert_status(res, 200)
        assert.equals(ev.id, res.json.id)
        assert.equals(1, res.json.requeued)

        local recs = helpers.wait_records(rec, "restocked", 1)
        assert.truthy(recs, "the requeued delivery did not run; stderr:\n"
          .. server:stderr())
        assert.same({ "ann@example.com" }, recs[1].data.emails)
        local done = wait_event(server, RESTOCKED, "delivered")
        assert.truthy(done, describe_events(server, RESTOCKED))
        assert.equals("delivered", done.deliveries[1].status)
        assert.equals(1, done.deliveries[1].attempts)
        assert.equals(0, helpers.events(server, { status = "dead" }).count)

        -- Nothing dead left to requeue; an unknown event is 404.
        res = admin(server, "POST", "/admin/events/" .. math.tointeger(ev.id) .. "/retry")
        helpers.assert_status(res, 200)
        assert.equals(0, res.json.requeued)
        helpers.assert_error(admin(server, "POST",
          "/admin/events/999999/retry"), 404, "not_found")
      end)
  end)

  describe("failure logs", function()
    it("write each failed delivery on one stderr line", function()
      local server = helpers.start { plugin = [[
local restock = require "restock"
restock.subscribe("restock-notification.restocked", function(data)
  local function inner() error("smtp is down") end
  inner()
end, { name = "mailer", max_attempts = 2 })
]] }
      restock_one(server)
      local stderr = helpers.wait_stderr(server, "is dead after 2 attempts")
      assert.truthy(stderr, "no ERROR line:\n" .. server:stderr())
      -- Every entry, these included, is one line starting with a timestamp
      -- (contract section 1: one line per entry).
      for line in stderr:gmatch("[^\n]+") do
        assert.truthy(line:match("^%d%d%d%d%-%d%d%-%d%dT"),
          "a log entry spans several lines; this line continues one:\n"
          .. line .. "\nstderr:\n" .. stderr)
      end
      local warn = line_with(stderr, "to mailer failed (attempt 1 of 2)")
      assert.truthy(warn and warn:find("smtp is down", 1, true), warn)
    end)
  end)

  describe("handler_timeout", function()
    it("aborts an endless loop inside pcall while /health answers",
      function()
        local dir = helpers.tmpdir()
        local rec = dir .. "/records.jsonl"
        local server = helpers.start { dir = dir,
          plugin = helpers.recorder_plugin(rec) .. [[
restock.options { handler_timeout = 1500, max_attempts = 1 }
restock.subscribe("restock-notification.restocked", function(data)
  record("spinning", data)
  local n = 0
  while true do
    pcall(function()
      while true do n = n + 1 end
    end)
  end
end, { name = "spinner" })
restock.subscribe("restock-notification.restocked", function(data)
  record("witness", data)
end, { name = "witness" })
]] }
        local t0 = socket.gettime()
        restock_one(server)
        assert.truthy(helpers.wait_records(rec, "spinning", 1),
          "the handler never started; stderr:\n" .. server:stderr())

        -- While it spins, the loop goes on: /health is answered, over and
        -- over, until the spinner's delivery dies of its timeout. A loop
        -- stuck in the handler would answer none before that.
        local answered = 0
        repeat
          helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
          answered = answered + 1
          local dead = admin(server, "GET", "/admin/events?status=dead&name="
            .. RESTOCKED).json.count > 0
        until dead or answered >= 1000000
        assert.truthy(answered >= 5, "only " .. answered
          .. " answers while a handler spun")
        assert.truthy(helpers.wait_records(rec, "witness", 1),
          "another handler of the event was not run")

        local ev = wait_event(server, RESTOCKED, "dead", 6)
        local took = socket.gettime() - t0
        assert.truthy(ev, describe_events(server, RESTOCKED))
        assert.truthy(took >= 1.4, "aborted after only " .. took .. " s")
        local by = {}
        for _, d in ipairs(ev.deliveries) do
          by[d.handler] = d
        end
        assert.equals("dead", by.spinner.status)
        assert.equals(1, by.spinner.attempts)
        assert.truthy(type(by.spinner.last_error) == "string"
          and by.spinner.last_error:find("timed out", 1, true),
          tostring(by.spinner.last_error))
        assert.equals("delivered", by.witness.status)
        assert.truthy(server:stderr():find("timed out after 1500 ms", 1,
          true), server:stderr())
        assert.equals(1, #helpers.read_records(rec, "spinning"))

        -- The server is well afterwards.
        helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
      end)
  end)

  describe("the restock module inside handlers", function()
    it("delivers an event emitted by a handler to its own handler",
      function()
        local dir = helpers.tmpdir()
        local rec = dir .. "/records.jsonl"
        local server = helpers.start { dir = dir,
          plugin = helpers.recorder_plugin(rec) .. [[
restock.subscribe("restock-notification.subscribed", function(data)
  restock.emit("custom.welcome", { email = data.email, n = 42 })
end)
restock.subscribe("custom.welcome", function(data)
  record("welcome", data)
end, { name = "welcomer" })
]] }
        helpers.assert_status(admin(server, "POST", "/admin/variants",
          { id = "v", inventory_quantity = 0 }), 200)
        subscribe(server, "v", "ann@example.com")

        local recs = helpers.wait_records(rec, "welcome", 1)
        assert.truthy(recs, "the custom event did not arrive; stderr:\n"
          .. server:stderr())
        assert.same({ email = "ann@example.com", n = 42 }, recs[1].data)
        local ev = wait_event(server, "custom.welcome", "delivered")
        assert.truthy(ev, describe_events(server, "custom.welcome"))
        assert.same({ email = "ann@example.com", n = 42 }, ev.data)
        assert.equals("welcomer", ev.deliveries[1].handler)
        assert.truthy(server:stderr():find(
          "Processing custom.welcome which has 1 subscribers", 1, true),
          server:stderr())
      end)

    it("sleeps in a handler without blocking the server", function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir,
        plugin = helpers.recorder_plugin(rec) .. [[
restock.subscribe("restock-notification.subscribed", function(data)
  record("before", data.email)
  restock.sleep(600)
  record("after", data.email)
end)
]] }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)
      subscribe(server, "v", "ann@example.com")

      assert.truthy(helpers.wait_records(rec, "before", 1),
        "the handler never started; stderr:\n" .. server:stderr())
      local t_before = socket.gettime()
      -- While it sleeps, /health is answered over and over; a sleep that
      -- blocked the loop would let none through before it woke.
      local answered = 0
      while #helpers.read_records(rec, "after") == 0 and answered < 1000000 do
        helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
        answered = answered + 1
      end
      assert.truthy(answered >= 5, "only " .. answered
        .. " answers while a handler slept")

      local recs = helpers.wait_records(rec, "after", 1)
      local gap = socket.gettime() - t_before
      assert.truthy(recs, "the handler did not wake up; stderr:\n"
        .. server:stderr())
      assert.equals("ann@example.com", recs[1].data)
      assert.truthy(gap >= 0.5, "slept only about " .. gap .. " s")
      assert.truthy(gap < 3, "slept " .. gap .. " s")
      assert.truthy(wait_event(server, SUBSCRIBED, "delivered"),
        describe_events(server, SUBSCRIBED))
    end)

    it("fails a delivery that returns nil and an error", function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir,
        plugin = helpers.recorder_plugin(rec) .. [[
restock.subscribe("restock-notification.subscribed", function(data)
  record("attempt", data.email)
  return nil, "why not"
end, { name = "picky", max_attempts = 1 })
]] }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)
      subscribe(server, "v", "ann@example.com")

      local ev = wait_event(server, SUBSCRIBED, "dead")
      assert.truthy(ev, describe_events(server, SUBSCRIBED))
      local d = ev.deliveries[1]
      assert.equals("picky", d.handler)
      assert.equals("dead", d.status)
      assert.equals(1, d.attempts)
      assert.equals(1, d.max_attempts)
      assert.truthy(type(d.last_error) == "string"
        and d.last_error:find("why not", 1, true), tostring(d.last_error))
      assert.equals(1, #helpers.read_records(rec, "attempt"))
      local stderr = server:stderr()
      assert.truthy(stderr:find("to picky is dead after 1 attempts: ", 1,
        true), stderr)
    end)
  end)
end)
