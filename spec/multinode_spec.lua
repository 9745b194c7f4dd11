-- Several nodes on one PostgreSQL database (contract section 7, issue 14):
-- the nodes list, migrations from several nodes at once, a 100,000-
-- subscriber restock shared by three nodes with every email delivered
-- exactly once, the same with a node killed mid-fan-out, an event written
-- on one node handled on another within 100 ms (LISTEN/NOTIFY), a handler
-- that outlives its lease, and PostgreSQL stopped and started under load.
--
-- A SQLite file serves one node: on SQLite these are pending, but for the
-- node list's single entry.
local helpers = require "spec.support.helpers"
local socket = require "socket"
local cjson = require "cjson"

local admin = helpers.admin
local RESTOCKED = "restock-notification.restocked"

local ONE_NODE = "a SQLite file serves one node"

-- A migrated database with variant `id` sold out and `n` subscriptions to
-- it (s0@example.com, s1@...), written with psql.
local function filled_db(dir, id, n)
  local db = helpers.fresh_db(dir)
  local rc, _, stderr = helpers.run({ "migrations", "run", "--db", db })
  assert.equals(0, rc, stderr)
  helpers.psql(db, string.format([[
INSERT INTO variants (id, inventory_quantity, created_at, updated_at)
  VALUES ('%s', 0, now(), now());
INSERT INTO restock_subscriptions (id, variant_id, sales_channel_id, email,
    created_at)
  SELECT nextval('restock_subscription_ids'), '%s', '', 's' || i
    || '@example.com', now() FROM generate_series(0, %d) AS i;
]], id, id, n - 1))
  return db
end

-- Starts node `tag` on db with a plugin recording to dir/TAG.jsonl.
local function start_node(dir, db, tag, body, env, options)
  local path = dir .. "/" .. tag .. ".jsonl"
  local plugin = helpers.recorder_plugin(path)
    .. string.format("local NODE = %q\n", tag)
    .. (options and ("restock.options " .. options .. "\n") or "")
    .. body
  local e = { RESTOCK_NODE_ID = "node-" .. tag }
  for k, v in pairs(env or {}) do
    e[k] = v
  end
  local node = helpers.start { dir = dir, db = db, plugin = plugin,
    no_migrate = true, env = e }
  node.tag = tag
  node.records = path
  return node
end

-- Every record of the given nodes, with its node.
local function all_records(nodes, tag)
  local out = {}
  for _, n in ipairs(nodes) do
    for _, r in ipairs(helpers.read_records(n.records, tag)) do
      r.node = n.tag
      out[#out + 1] = r
    end
  end
  return out
end

-- How many emails the "done" records hold, in all.
local function emails_done(nodes)
  local total = 0
  for _, r in ipairs(all_records(nodes, "done")) do
    total = total + #r.data.emails
  end
  return total
end

describe("the nodes of a service", function()
  after_each(helpers.cleanup)

  it("lists this one node on SQLite", function()
    if helpers.sqlite_only("PostgreSQL lists every node (below)") then
      return
    end
    local server = helpers.start()
    local res = helpers.assert_status(admin(server, "GET", "/admin/nodes"),
      200)
    assert.equals(1, #res.json.nodes)
    local n = res.json.nodes[1]
    assert.truthy(n.id:find(":" .. server.pid .. ":", 1, true), n.id)
    assert.truthy(n.started_at:match("^%d%d%d%d%-%d%d%-%d%dT"), n.started_at)
    assert.truthy(n.last_seen_at >= n.started_at)
    assert.truthy(n.version:match("^%d+%.%d+%.%d+$"), n.version)
  end)

  it("lists every node sharing a PostgreSQL database, and forgets one "
    .. "stopped cleanly", function()
      if helpers.pg_only(ONE_NODE) then return end
      local dir = helpers.tmpdir()
      local db = helpers.fresh_db(dir)
      local a = helpers.start { dir = dir, db = db }
      local b = helpers.start { dir = dir, db = db, no_migrate = true }
      local c = helpers.start { dir = dir, db = db, no_migrate = true,
        env = { RESTOCK_NODE_ID = "web-3" } }
      local function ids(server)
        local res = helpers.assert_status(admin(server, "GET",
          "/admin/nodes"), 200)
        local out = {}
        for _, n in ipairs(res.json.nodes) do
          out[#out + 1] = n.id
          assert.truthy(n.last_seen_at >= n.started_at, cjson.encode(n))
        end
        table.sort(out)
        return out
      end
      local seen = ids(b)
      assert.equals(3, #seen, table.concat(seen, " "))
      assert.truthy(helpers.wait_for(function()
        for _, id in ipairs(ids(a)) do
          if id == "web-3" then
            return true
          end
        end
      end), "RESTOCK_NODE_ID is not the node's id")
      assert.same(seen, ids(c))
      -- Heartbeats go on: a node's last_seen_at moves.
      local function seen_at(server, id)
        for _, n in ipairs(admin(server, "GET", "/admin/nodes").json.nodes) do
          if id == n.id then
            return n.last_seen_at
          end
        end
      end
      local before = seen_at(a, "web-3")
      assert.truthy(helpers.wait_for(function()
        return seen_at(a, "web-3") > before
      end, 5), "no heartbeat of web-3 in 5 s")
      assert.equals(0, c:stop())
      assert.truthy(helpers.wait_for(function()
        return #ids(a) == 2
      end), "a node stopped cleanly is still listed")
    end)

  it("migrates once when three nodes run the migrations at once", function()
    if helpers.pg_only(ONE_NODE) then return end
    local dir = helpers.tmpdir()
    local db = helpers.fresh_db(dir)
    local bin = helpers.binary()
    if bin:sub(1, 1) ~= "/" then
      bin = require("lfs").currentdir() .. "/" .. bin
    end
    local cmds = {}
    for i = 1, 3 do
      cmds[i] = string.format("%s migrations run --db %s >%s/m%d.out "
        .. "2>%s/m%d.err; echo $? >%s/m%d.rc", helpers.shquote(bin),
        helpers.shquote(db), dir, i, dir, i, dir, i)
    end
    assert(os.execute("( " .. table.concat(cmds, " ) & ( ")
      .. " ) & wait"))
    local applied = {}
    for i = 1, 3 do
      assert.equals("0", (helpers.read_file(dir .. "/m" .. i .. ".rc")
        or ""):match("%d+"), helpers.read_file(dir .. "/m" .. i .. ".err"))
      for name in (helpers.read_file(dir .. "/m" .. i .. ".out") or "")
          :gmatch("applied (%S+)") do
        applied[name] = (applied[name] or 0) + 1
      end
    end
    assert.truthy(applied["001_initial"], "001_initial was never applied")
    for name, times in pairs(applied) do
      assert.equals(1, times, name .. " applied " .. times .. " times")
    end
    local rc, status = helpers.run({ "migrations", "status", "--db", db })
    assert.equals(0, rc)
    assert.is_nil(status:find("pending", 1, true), status)
  end)
end)

-- Records what each delivery of the restocked event carried.
local RESTOCK_HANDLER = [[
restock.subscribe("restock-notification.restocked", function(data)
  record("start", { event = data.emails[1] })
  restock.sleep(PAUSE)
  record("done", { emails = data.emails })
end, { name = "mailer" })
]]

describe("a restock shared by three nodes", function()
  after_each(helpers.cleanup)

  it("delivers each of 100,000 emails exactly once, the nodes taking its "
    .. "chunks at once",
    function()
      if helpers.pg_only(ONE_NODE) then return end
      local dir = helpers.tmpdir()
      local db = filled_db(dir, "big", 100000)
      local body = "local PAUSE = 30\n" .. RESTOCK_HANDLER
      local nodes = {}
      for _, tag in ipairs({ "a", "b", "c" }) do
        nodes[#nodes + 1] = start_node(dir, db, tag, body)
      end
      helpers.assert_status(admin(nodes[1], "POST", "/admin/variants/big",
        { inventory_quantity = 50 }), 200)
      local total = helpers.wait_for(function()
        local n = emails_done(nodes)
        return n >= 100000 and n
      end, 180)
      assert.truthy(total, "only " .. emails_done(nodes)
        .. " emails delivered")
      socket.sleep(0.5) -- a second delivery of anything would show now
      local seen, twice, used = {}, {}, {}
      for _, r in ipairs(all_records(nodes, "done")) do
        used[r.node] = true
        for _, email in ipairs(r.data.emails) do
          if seen[email] then
            twice[#twice + 1] = email
          end
          seen[email] = true
        end
      end
      assert.same({}, twice)
      for i = 0, 99999 do
        assert(seen["s" .. i .. "@example.com"], "s" .. i .. " never got one")
      end
      -- Each event oldest first, wherever the lane of the node that took
      -- it started (and 100 of them below: each whole).
      for _, r in ipairs(all_records(nodes, "done")) do
        local prev = -1
        for _, email in ipairs(r.data.emails) do
          local i = tonumber(email:match("^s(%d+)@"))
          assert.truthy(i > prev, "an event's emails are out of order")
          prev = i
        end
      end
      local n = 0
      for _ in pairs(used) do
        n = n + 1
      end
      assert.truthy(n >= 2, "one node ran every delivery")
      -- Each subscription was taken once: the chunks the nodes took
      -- (several at once, each skipping the rows another holds) notified
      -- 100,000 in all, and more than one node took some.
      local notified, takers = 0, 0
      for _, node in ipairs(nodes) do
        local mine = 0
        for count in node:stderr():gmatch(
            "restock check of big: (%d+) subscriptions notified") do
          mine = mine + tonumber(count)
        end
        notified = notified + mine
        if mine > 0 then
          takers = takers + 1
        end
      end
      assert.equals(100000, notified)
      assert.truthy(takers >= 2, "one node took every chunk")
      -- The demand counts the takes kept (once a scope, at its end) add
      -- up, and the check is gone.
      assert.equals("0|100000", helpers.sql(db, "SELECT waiting || '|' ||"
        .. " notified FROM demand_counts WHERE variant_id = 'big'"))
      assert.equals("100000", helpers.sql(db,
        "SELECT count(*) FROM restock_history WHERE variant_id = 'big'"))
      assert.equals("0", helpers.sql(db, "SELECT count(*) FROM restock_checks"))
      local events = helpers.events(nodes[2], { name = RESTOCKED,
        status = "delivered" })
      assert.equals(100, events.count)
    end)

  it("delivers every email at least once when a node is killed mid-fan-out, "
    .. "the others taking over its leases", function()
      if helpers.pg_only(ONE_NODE) then return end
      local dir = helpers.tmpdir()
      local db = filled_db(dir, "big", 100000)
      local body = "local PAUSE = 400\n" .. RESTOCK_HANDLER
      local env = { RESTOCK_LEASE_MS = "2000" }
      local nodes = {}
      for _, tag in ipairs({ "a", "b", "c" }) do
        nodes[#nodes + 1] = start_node(dir, db, tag, body, env)
      end
      local victim = nodes[2]
      helpers.assert_status(admin(nodes[1], "POST", "/admin/variants/big",
        { inventory_quantity = 50 }), 200)
      -- Killed while it runs deliveries it holds leases for.
      assert.truthy(helpers.wait_records(victim.records, "start", 3, 60),
        "node b never started a delivery")
      victim:kill9()
      local started = {}
      for _, r in ipairs(helpers.read_records(victim.records, "start")) do
        started[r.data.event] = true
      end
      for _, r in ipairs(helpers.read_records(victim.records, "done")) do
        started[r.data.emails[1]] = nil
      end
      local survivors = { nodes[1], nodes[3] }
      local seen
      assert.truthy(helpers.wait_for(function()
        seen = {}
        local n = 0
        for _, r in ipairs(all_records(nodes, "done")) do
          for _, email in ipairs(r.data.emails) do
            if not seen[email] then
              n = n + 1
            end
            seen[email] = true
          end
        end
        return n >= 100000
      end, 180), "not every email was delivered")
      for i = 0, 99999 do
        assert(seen["s" .. i .. "@example.com"], "s" .. i .. " never got one")
      end
      -- What node b was running when it died ran again on another node.
      local taken = {}
      for _, r in ipairs(all_records(survivors, "done")) do
        taken[r.data.emails[1]] = true
      end
      local cut = 0
      for first in pairs(started) do
        cut = cut + 1
        assert.truthy(taken[first], "the delivery starting with " .. first
          .. " that node b held was never run by another node")
      end
      assert.truthy(cut > 0, "node b had finished everything it started")
      assert.equals("0", helpers.sql(db,
        "SELECT count(*) FROM deliveries WHERE lease_owner = 'node-b'"))
      assert.equals(100, helpers.events(nodes[1], { name = RESTOCKED,
        status = "delivered" }).count)
    end)
end)

describe("one node at a time", function()
  after_each(helpers.cleanup)

  it("starts an event written on node A on node B within 100 ms, A having "
    .. "no handler for it", function()
      if helpers.pg_only(ONE_NODE) then return end
      local dir = helpers.tmpdir()
      local db = helpers.fresh_db(dir)
      local rc = helpers.run({ "migrations", "run", "--db", db })
      assert.equals(0, rc)
      -- B first: A learns of B's handler when it registers.
      local b = start_node(dir, db, "b", [[
local clock = require "socket"
restock.subscribe("shop.ping", function(data)
  record("pong", { t0 = data.t0, t1 = clock.gettime(), email = data.email })
end, { name = "pong" })
]])
      local a = start_node(dir, db, "a", [[
local clock = require "socket"
restock.subscribe("restock-notification.subscribed", function(data)
  assert(restock.emit("shop.ping", { t0 = clock.gettime(),
    email = data.email }))
end, { name = "relay" })
]])
      helpers.assert_status(admin(a, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)
      local lags = {}
      for i = 1, 5 do
        helpers.assert_status(helpers.request(a, "POST",
          "/restock-notifications/variants/v",
          { json = { email = "p" .. i .. "@example.com" } }), 201)
        local recs = helpers.wait_records(b.records, "pong", i, 10)
        assert.truthy(recs, "ping " .. i .. " never reached node b")
        lags[i] = recs[i].data.t1 - recs[i].data.t0
      end
      assert.same({}, helpers.read_records(a.records, "pong"))
      table.sort(lags)
      -- Not a poll: the fallback looks once a second.
      assert.truthy(lags[3] < 0.1, string.format(
        "median %.0f ms from A's emit to B's handler", lags[3] * 1000))
      assert.truthy(lags[5] < 0.9, string.format(
        "slowest %.0f ms from A's emit to B's handler", lags[5] * 1000))
    end)

  it("runs a delivery whose handler outlives its lease on one node", function()
    if helpers.pg_only(ONE_NODE) then return end
    local dir = helpers.tmpdir()
    local db = helpers.fresh_db(dir)
    assert.equals(0, (helpers.run({ "migrations", "run", "--db", db })))
    local body = [[
restock.subscribe("restock-notification.subscribed", function(data)
  record("start", { email = data.email })
  restock.sleep(3000)
  record("done", { email = data.email })
end, { name = "slow" })
]]
    local env = { RESTOCK_LEASE_MS = "600" }
    local a = start_node(dir, db, "a", body, env,
      "{ handler_timeout = 10000 }")
    local b = start_node(dir, db, "b", body, env,
      "{ handler_timeout = 10000 }")
    helpers.assert_status(admin(a, "POST", "/admin/variants",
      { id = "v", inventory_quantity = 0 }), 200)
    helpers.assert_status(helpers.request(a, "POST",
      "/restock-notifications/variants/v",
      { json = { email = "slow@example.com" } }), 201)
    assert.truthy(helpers.wait_for(function()
      return #all_records({ a, b }, "done") >= 1
    end, 10), "the delivery never finished")
    -- Five leases long: a lease not renewed would have been taken over.
    socket.sleep(1)
    assert.equals(1, #all_records({ a, b }, "start"))
    local ev = helpers.events(b, { name = "restock-notification.subscribed" })
    assert.equals("delivered", ev.events[1].status)
    assert.equals(1, ev.events[1].deliveries[1].attempts)
  end)
end)

-- Subscribes with `conns` requests in flight at a time, on keep-alive
-- connections, until `stop()` is true; returns {email -> status}.
local function subscribe_load(server, prefix, conns, stop, answers)
  local pool = {}
  for i = 1, conns do
    pool[i] = helpers.connect(server, 15)
  end
  local n = 0
  repeat
    local sent = {}
    for i, conn in ipairs(pool) do
      n = n + 1
      local email = string.format("%s%d@example.com", prefix, n)
      assert(conn:send_request("POST", "/restock-notifications/variants/v",
        { json = { email = email } }))
      sent[i] = email
    end
    for i, conn in ipairs(pool) do
      local t0 = socket.gettime()
      local res, err = conn:read_response()
      assert(res, "no answer: " .. tostring(err))
      assert(socket.gettime() - t0 < 10, "an answer took 10 s")
      answers[sent[i]] = res.status
      if res.status ~= 201 and res.status ~= 200 then
        assert.equals(503, res.status, res.body)
        assert.equals("unexpected_state", res.json and res.json.type)
      end
    end
  until stop()
  for _, conn in ipairs(pool) do
    conn:close()
  end
  return answers
end

describe("PostgreSQL going away", function()
  after_each(function()
    -- Whatever happened, the cluster runs again for the next spec.
    if helpers.pg then
      os.execute("sh spec/pg.sh ctl " .. helpers.shquote(
        os.getenv("RESTOCK_TEST_PG_DIR")) .. " start >/dev/null 2>&1")
    end
    helpers.cleanup()
  end)

  it("answers 503 while it is down, /health too, comes back by itself and "
    .. "loses no acknowledged subscription", function()
      if helpers.pg_only(ONE_NODE) then return end
      local pgdir = assert(os.getenv("RESTOCK_TEST_PG_DIR"),
        "RESTOCK_TEST_PG_DIR names the cluster spec/pg.sh made")
      local server = helpers.start()
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", inventory_quantity = 0 }), 200)
      local answers = {}
      local t = socket.gettime()
      subscribe_load(server, "up", 8, function()
        return socket.gettime() - t > 1
      end, answers)
      assert(os.execute("sh spec/pg.sh ctl " .. helpers.shquote(pgdir)
        .. " stop"))
      local down_at = socket.gettime()
      local refused_at
      subscribe_load(server, "down", 8, function()
        for _, status in pairs(answers) do
          if status == 503 and not refused_at then
            refused_at = socket.gettime()
          end
        end
        return refused_at and socket.gettime() - refused_at > 1
          or socket.gettime() - down_at > 10
      end, answers)
      assert.truthy(refused_at, "no 503 in 10 s with the database down")
      assert.truthy(refused_at - down_at < 5, string.format(
        "the first 503 came %.1f s after the database went", refused_at
        - down_at))
      assert.truthy(helpers.wait_for(function()
        return helpers.request(server, "GET", "/health").status == 503
      end, 5), "/health did not answer 503 with the database down")
      assert(os.execute("sh spec/pg.sh ctl " .. helpers.shquote(pgdir)
        .. " start"))
      local back
      subscribe_load(server, "again", 8, function()
        for email, status in pairs(answers) do
          if status == 201 and email:match("^again") then
            back = true
          end
        end
        return back
      end, answers)
      assert.truthy(helpers.wait_for(function()
        return helpers.request(server, "GET", "/health").status == 200
      end, 10), "/health did not come back")
      -- Every subscription acknowledged is stored.
      local stored = {}
      for email in helpers.sql(server.db,
          "SELECT email FROM restock_subscriptions"):gmatch("[^\n]+") do
        stored[email] = true
      end
      local acked, lost = 0, {}
      for email, status in pairs(answers) do
        if status == 201 then
          acked = acked + 1
          if not stored[email] then
            lost[#lost + 1] = email
          end
        end
      end
      assert.same({}, lost)
      assert.truthy(acked > 0)
      assert.truthy(server:stderr():find("made again", 1, true),
        server:stderr())
    end)
end)
