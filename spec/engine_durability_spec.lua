-- Durability of the engine (contract sections 3 and 4): a scheduled restock
-- check survives SIGKILL and a restart, and an event not yet delivered when
-- the server dies is delivered after the restart.
local helpers = require "spec.support.helpers"
local socket = require "socket"

local admin = helpers.admin

local RESTOCKED = "restock-notification.restocked"

local function subscribe(server, variant_id, email)
  local res = helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { json = { email = email } })
  helpers.assert_status(res, 201)
end

local function set_quantity(server, variant_id, q)
  helpers.assert_status(admin(server, "POST", "/admin/variants/"
    .. helpers.urlencode(variant_id), { inventory_quantity = q }), 200)
end

-- Runs one SQL query on the server's database (SQLite's shell, if there is
-- one, or psql) and returns its output trimmed, or nil without the shell.
local sql = helpers.sql

local function recording_plugin(path, options)
  return helpers.recorder_plugin(path) .. "restock.options " .. options
    .. [[

restock.subscribe("restock-notification.restocked", function(data)
  record("restocked", data)
end, { name = "mailer" })
]]
end

describe("engine durability", function()
  after_each(helpers.cleanup)

  it("runs a scheduled check after SIGKILL and a restart", function()
    local dir = helpers.tmpdir()
    local rec = dir .. "/records.jsonl"
    local plugin = recording_plugin(rec, "{ trigger_delay = 1500 }")
    local server = helpers.start { dir = dir, plugin = plugin }
    helpers.assert_status(admin(server, "POST", "/admin/variants",
      { id = "v", inventory_quantity = 0 }), 200)
    subscribe(server, "v", "ann@example.com")
    subscribe(server, "v", "ben@example.com")

    local t0 = socket.gettime()
    set_quantity(server, "v", 7)
    server:kill9()
    assert.truthy(socket.gettime() - t0 < 1.2,
      "the kill came too late to be before the check")
    assert.same({}, helpers.read_records(rec))

    -- What the dead server left behind: the check, and no event yet.
    local checks = sql(server.db,
      "SELECT count(*) FROM restock_checks WHERE variant_id = 'v'")
    if checks then
      assert.equals("1", checks)
      assert.equals("0", sql(server.db, "SELECT count(*) FROM events "
        .. "WHERE name = '" .. RESTOCKED .. "'"))
    end

    local again = helpers.start { dir = dir, db = server.db, plugin = plugin }
    local recs = helpers.wait_records(rec, "restocked", 1, 6)
    assert.truthy(recs, "the check did not run after the restart; stderr:\n"
      .. again:stderr())
    assert.equals("v", recs[1].data.variant_id)
    assert.same({ "ann@example.com", "ben@example.com" }, recs[1].data.emails)
    -- Not before it was due.
    assert.truthy(socket.gettime() - t0 >= 1.4, "the check ran early")

    local res = admin(again, "GET", "/admin/restock-notifications"
      .. helpers.query({ variant_id = "v" }))
    assert.equals(0, res.json.count)
    socket.sleep(0.2)
    assert.equals(1, #helpers.read_records(rec, "restocked"))
  end)

  it("delivers an event after a restart when the handler failed before",
    function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local failing = helpers.recorder_plugin(rec) .. [[
restock.options { handler_timeout = 2000 }
restock.subscribe("restock-notification.restocked", function(data)
  record("attempt", data)
  error("smtp is down")
end, { name = "mailer" })
]]
      local server = helpers.start { dir = dir, plugin = failing }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)
      subscribe(server, "v", "ann@example.com")
      set_quantity(server, "v", 3)

      assert.truthy(helpers.wait_records(rec, "attempt", 1),
        "the handler never ran; stderr:\n" .. server:stderr())
      assert.truthy(helpers.wait_stderr(server, "smtp is down"),
        "the failure was not logged:\n" .. server:stderr())
      -- The failed attempt is stored by the writer's next commit, after the
      -- log line: killed before it, the attempt would not count (and run
      -- again, as at-least-once allows). Wait until it is stored.
      assert.truthy(helpers.wait_for(function()
        local j = helpers.events(server, { name = RESTOCKED })
        local d = j.events[1] and j.events[1].deliveries[1]
        return d and d.attempts == 1
      end), "the failed attempt was never stored")
      server:kill9()
      local ev = sql(server.db, "SELECT status FROM events WHERE name = '"
        .. RESTOCKED .. "'")
      if ev then
        assert.equals("pending", ev)
      end

      local again = helpers.start { dir = dir, db = server.db,
        plugin = recording_plugin(rec, "{}") }
      local recs = helpers.wait_records(rec, "restocked", 1, 6)
      assert.truthy(recs, "the event was not delivered after the restart; "
        .. "stderr:\n" .. again:stderr())
      assert.equals("v", recs[1].data.variant_id)
      assert.same({ "ann@example.com" }, recs[1].data.emails)

      local delivered = helpers.wait_for(function()
        local j = helpers.events(again, { name = RESTOCKED })
        if j.count == 1 and j.events[1].status == "delivered" then
          return j.events[1]
        end
      end)
      assert.truthy(delivered, "the event is not marked delivered")
      assert.equals("mailer", delivered.deliveries[1].handler)
      assert.equals("delivered", delivered.deliveries[1].status)
      assert.equals(2, delivered.deliveries[1].attempts)
    end)
end)
