-- The storage core (docs/architecture.md): one server per SQLite file, a
-- restart that redelivers at once what the dead server was running, a loop
-- that answers while the writer works, and nothing acknowledged or handled
-- that was not committed, shown on a full disk.
local helpers = require "spec.support.helpers"
local socket = require "socket"

local admin = helpers.admin

local RESTOCKED = "restock-notification.restocked"

local function subscribe(server, variant_id, email)
  return helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { json = { email = email } })
end

local function set_quantity(server, variant_id, q)
  helpers.assert_status(admin(server, "POST", "/admin/variants/"
    .. helpers.urlencode(variant_id), { inventory_quantity = q }), 200)
end

-- Fills a migrated database before its server starts: a python3 snippet
-- given the SQLite file's path, or SQL run with psql on PostgreSQL.
local function fill(db, sqlite_python, pg_sql)
  if helpers.pg then
    helpers.psql(db, pg_sql)
    return true
  end
  local f = assert(io.open(db .. ".py", "w"))
  f:write(sqlite_python)
  f:close()
  return os.execute(string.format("python3 %s %s",
    helpers.shquote(db .. ".py"), helpers.shquote(db)))
end

describe("one SQLite file, one server", function()
  after_each(helpers.cleanup)

  it("refuses a second server on the same file with exit 1 and the PID",
    function()
      if helpers.sqlite_only("several servers share a PostgreSQL database "
        .. "(multinode_spec.lua)") then return end
      local first = helpers.start()
      local rc, _, stderr = helpers.run({ "start", "--db", first.db,
        "--config", first.plugin_path, "--port", "0" },
        { RESTOCK_ADMIN_TOKEN = "x" }, { timeout = 10 })
      assert.equals(1, rc, stderr)
      assert.truthy(stderr:find("in use", 1, true), stderr)
      assert.truthy(stderr:find("PID " .. first.pid, 1, true),
        "the PID " .. first.pid .. " is not named:\n" .. stderr)
      -- The first one is unharmed.
      helpers.assert_status(helpers.request(first, "GET", "/health"), 200)
    end)

  it("lets a server start on the file once the first one is gone, even "
    .. "killed", function()
      if helpers.sqlite_only("no lock file on PostgreSQL") then return end
      local first = helpers.start()
      first:kill9()
      local second = helpers.start { dir = first.dir, db = first.db,
        no_migrate = true }
      helpers.assert_status(helpers.request(second, "GET", "/health"), 200)
    end)
end)

describe("a restart after SIGKILL", function()
  after_each(helpers.cleanup)

  it("runs a delivery the dead server was running again at once", function()
    local dir = helpers.tmpdir()
    local rec = dir .. "/records.jsonl"
    -- The first handler sleeps far longer than the test: it is running,
    -- holding its lease (handler_timeout + 5 s), when the server dies.
    local sleeper = helpers.recorder_plugin(rec) .. [[
restock.subscribe("restock-notification.restocked", function(data)
  record("started", data)
  restock.sleep(60000)
end, { name = "mailer" })
]]
    local server = helpers.start { dir = dir, plugin = sleeper }
    helpers.assert_status(admin(server, "POST", "/admin/variants",
      { id = "v", inventory_quantity = 0 }), 200)
    helpers.assert_status(subscribe(server, "v", "ann@example.com"), 201)
    set_quantity(server, "v", 2)
    assert.truthy(helpers.wait_records(rec, "started", 1),
      "the handler never started; stderr:\n" .. server:stderr())
    server:kill9()

    local quick = helpers.recorder_plugin(rec) .. [[
restock.subscribe("restock-notification.restocked", function(data)
  record("again", data)
end, { name = "mailer" })
]]
    local again = helpers.start { dir = dir, db = server.db, plugin = quick }
    local t0 = socket.gettime()
    local recs = helpers.wait_records(rec, "again", 1, 10)
    assert.truthy(recs, "the delivery did not run again; stderr:\n"
      .. again:stderr())
    local waited = socket.gettime() - t0
    assert.truthy(waited < 2, string.format(
      "the delivery ran again %.1f s after the restart, not at once", waited))
    assert.same({ "ann@example.com" }, recs[1].data.emails)
    assert.truthy(again:stderr():find("due again", 1, true), again:stderr())
    local done = helpers.wait_for(function()
      local j = helpers.events(again, { name = RESTOCKED })
      return j.events[1] and j.events[1].status == "delivered" and j
    end)
    assert.truthy(done, "the delivery was not recorded as delivered")
  end)
end)

describe("the loop while the storage works", function()
  teardown(helpers.cleanup)

  it("answers /health while the writer notifies 200,000 subscribers",
    function()
      local dir = helpers.tmpdir()
      local db = helpers.fresh_db(dir)
      local rc, _, stderr = helpers.run({ "migrations", "run", "--db", db })
      assert.equals(0, rc, stderr)
      assert.is_true(fill(db, [[
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("INSERT INTO variants (id, inventory_quantity, created_at, updated_at) VALUES ('big', 0, 'x', 'x')")
c.executemany("INSERT INTO restock_subscriptions (variant_id, sales_channel_id, email, created_at) VALUES ('big', '', ?, '2026-01-01T00:00:00.000Z')",
  (("s%d@example.com" % i,) for i in range(200000)))
c.commit()
]], [[
INSERT INTO variants (id, inventory_quantity, created_at, updated_at)
  VALUES ('big', 0, now(), now());
INSERT INTO restock_subscriptions (id, variant_id, sales_channel_id, email,
    created_at)
  SELECT nextval('restock_subscription_ids'), 'big', '', 's' || i
    || '@example.com', '2026-01-01T00:00:00.000Z'
  FROM generate_series(0, 199999) AS i;
]]))
      local server = helpers.start { dir = dir, db = db, no_migrate = true,
        plugin = 'local restock = require "restock"\n'
          .. 'restock.options { batch_size = 1000 }\n' }
      set_quantity(server, "big", 5)
      -- /health, over and over, until the last of the 200 events is
      -- written. The writer moves 200,000 rows in 20 units meanwhile; a
      -- loop that waited for it would answer none.
      local conn = helpers.connect(server)
      local answered = 0
      local count = 0
      repeat
        helpers.assert_status(conn:request("GET", "/health"), 200)
        answered = answered + 1
        if answered % 10 == 0 then
          count = helpers.events(server, { name = RESTOCKED }).count
        end
      until count >= 200 or answered > 1000000
      assert.equals(200, helpers.events(server, { name = RESTOCKED }).count)
      assert.truthy(answered >= 10, "only " .. answered
        .. " answers while the writer worked")
    end)
end)

describe("the loop while a write is long", function()
  teardown(helpers.cleanup)

  it("answers /health while a batch of 10,000 updates is written", function()
    local dir = helpers.tmpdir()
    local db = helpers.fresh_db(dir)
    local rc, _, stderr = helpers.run({ "migrations", "run", "--db", db })
    assert.equals(0, rc, stderr)
    assert.is_true(fill(db, [[
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.executemany("INSERT INTO variants (id, inventory_quantity, created_at, updated_at) VALUES (?, 0, 'x', 'x')",
  (("v%d" % i,) for i in range(10000)))
c.commit()
]], [[
INSERT INTO variants (id, inventory_quantity, created_at, updated_at)
  SELECT 'v' || i, 0, now(), now() FROM generate_series(0, 9999) AS i;
]]))
    local server = helpers.start { dir = dir, db = db, no_migrate = true }
    local updates = {}
    for i = 0, 9999 do
      updates[#updates + 1] = string.format(
        '{"variant_id":"v%d","inventory_quantity":%d}', i, i % 7 + 1)
    end
    local batch = helpers.connect(server, 60)
    batch:send_request("POST", "/admin/inventory/batch", {
      headers = { Authorization = "Bearer " .. helpers.ADMIN_TOKEN,
        ["Content-Type"] = "application/json" },
      body = '{"updates":[' .. table.concat(updates, ",") .. "]}" })
    -- The batch is one unit: 10,000 rows and events in one transaction on
    -- the writer. /health, over and over on another connection, until its
    -- answer arrives; a loop that ran the batch itself would answer none.
    local other = helpers.connect(server)
    local answered = 0
    while not batch:fill(0) do
      helpers.assert_status(other:request("GET", "/health"), 200)
      answered = answered + 1
      assert.truthy(answered < 1000000, "the batch never answered")
    end
    local res = assert(batch:read_response())
    helpers.assert_status(res, 200)
    assert.equals(10000, res.json.updated)
    assert.truthy(answered >= 10, "only " .. answered
      .. " answers while the batch was written")
  end)
end)

-- A 2 MiB tmpfs the spec mounts, filled up: every commit fails there.
local function mount_small_disk()
  local dir = helpers.tmpdir()
  local mnt = dir .. "/disk"
  assert(os.execute("mkdir -p " .. helpers.shquote(mnt)))
  if not os.execute(string.format(
      "mount -t tmpfs -o size=2m tmpfs %s 2>/dev/null", helpers.shquote(mnt)))
  then
    return nil
  end
  return mnt
end

local function unmount(mnt)
  os.execute(string.format("umount -l %s 2>/dev/null", helpers.shquote(mnt)))
end

describe("a full disk", function()
  local mnt
  after_each(function()
    -- Lazily: the server still has its files open until cleanup stops it.
    if mnt then unmount(mnt) end
    mnt = nil
    helpers.cleanup()
  end)

  it("answers 503 JSON and keeps the connection, runs no handler for what "
    .. "was not stored, and recovers once there is room", function()
      if helpers.sqlite_only("the database's disk is PostgreSQL's server's; "
        .. "multinode_spec.lua stops the server instead") then return end
      mnt = mount_small_disk()
      if not mnt then
        pending("mounting a tmpfs needs root")
        return
      end
      local rec = helpers.tmpdir() .. "/records.jsonl"
      local plugin = helpers.recorder_plugin(rec) .. [[
restock.subscribe("restock-notification.subscribed", function(data)
  record("subscribed", data.email)
end, { name = "welcome" })
]]
      local server = helpers.start { dir = mnt, db = mnt .. "/restock.db",
        plugin = plugin }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)
      -- Take the room that is left, but for a few pages.
      os.execute(string.format("dd if=/dev/zero of=%s/filler bs=4k "
        .. "2>/dev/null", mnt))
      local conn = helpers.connect(server)
      local answered = {}
      local refused, stored = 0, 0
      for i = 1, 400 do
        local email = string.format("shopper%d@example.com", i)
        local res = conn:request("POST", "/restock-notifications/variants/v",
          { json = { email = email } })
        assert.truthy(res, "no answer on a kept connection")
        if res.status == 201 then
          stored = stored + 1
          answered[email] = true
        else
          assert.equals(503, res.status, res.body)
          assert.equals("unexpected_state", res.json and res.json.type,
            res.body)
          refused = refused + 1
        end
      end
      assert.truthy(refused > 0, "the disk never filled: " .. stored
        .. " stored")
      -- The same connection answers on: it was never closed.
      helpers.assert_status(conn:request("GET", "/health"), 200)

      -- Room again: the server goes on by itself.
      os.remove(mnt .. "/filler")
      local ok = helpers.wait_for(function()
        local res = conn:request("POST", "/restock-notifications/variants/v",
          { json = { email = "after@example.com" } })
        return res and res.status == 201
      end, 5)
      assert.truthy(ok, "subscribes still fail once there is room")
      answered["after@example.com"] = true

      -- Every handler run was for a subscription that was answered 201 and
      -- is stored; none for one that was refused.
      local function listed()
        local all = {}
        local j = admin(server, "GET",
          "/admin/restock-notifications?limit=1000").json
        for _, n in ipairs(j.restock_notifications) do all[n.email] = true end
        return all
      end
      local stored_now = listed()
      for email in pairs(answered) do
        assert.truthy(stored_now[email], email .. " was answered 201 but is "
          .. "not stored")
      end
      for email in pairs(stored_now) do
        assert.truthy(answered[email], email .. " is stored but was refused")
      end
      helpers.wait_records(rec, "subscribed", stored + 1, 5)
      for _, r in ipairs(helpers.read_records(rec, "subscribed")) do
        assert.truthy(answered[r.data], "a handler ran for " .. r.data
          .. ", which was never stored")
      end
    end)
end)

describe("durability", function()
  after_each(helpers.cleanup)

  it("is an option, \"process\" by default and \"full\" when asked",
    function()
      local dir = helpers.tmpdir()
      local plugin = dir .. "/plugin.lua"
      helpers.write_file(plugin,
        'require("restock").options { durability = "full" }\n')
      local rc, out, err = helpers.run({ "check", "--config", plugin })
      assert.equals(0, rc, err)
      assert.equals("full", require("cjson").decode(out).durability)
      local server = helpers.start { config = plugin }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)
      helpers.assert_status(subscribe(server, "v", "ann@example.com"), 201)
      helpers.write_file(plugin,
        'require("restock").options { durability = "always" }\n')
      rc, out, err = helpers.run({ "check", "--config", plugin })
      assert.equals(2, rc)
      assert.truthy(err:find("durability", 1, true), err)
    end)
end)
