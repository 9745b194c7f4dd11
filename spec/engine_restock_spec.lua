-- The restock engine end to end (contract sections 2, 3 and 4): the seed's
-- "Test Plugin" walk-through, the inventory_required threshold, the
-- trigger_delay (honoured, and collapsing changes into one check) and
-- throttled notification over several intervals. A test plugin appends
-- every event its handlers receive to a file that the spec polls.
local helpers = require "spec.support.helpers"
local socket = require "socket"

local admin = helpers.admin

local RESTOCKED = "restock-notification.restocked"

local function subscribe(server, variant_id, email)
  local res = helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { json = { email = email } })
  helpers.assert_status(res, 201)
  return res.json.restock_notification
end

local function create_variant(server, v)
  helpers.assert_status(admin(server, "POST", "/admin/variants", v), 200)
end

local function set_quantity(server, variant_id, q)
  local res = admin(server, "POST", "/admin/variants/"
    .. helpers.urlencode(variant_id), { inventory_quantity = q })
  helpers.assert_status(res, 200)
  return res.json.variant
end

-- The subscriptions listed for a query, as an array of emails in order.
local function list_emails(server, query)
  local res = admin(server, "GET", "/admin/restock-notifications"
    .. helpers.query(query))
  helpers.assert_status(res, 200)
  local t = {}
  for i, n in ipairs(res.json.restock_notifications) do
    t[i] = n.email
  end
  return t, res.json
end

-- The restocked records for one variant, in arrival order.
local function restocks_of(path, variant_id)
  local out = {}
  for _, r in ipairs(helpers.read_records(path, "restocked")) do
    if r.data.variant_id == variant_id then
      out[#out + 1] = r.data
    end
  end
  return out
end

local function wait_restocks(path, variant_id, n, timeout)
  return helpers.wait_for(function()
    local recs = restocks_of(path, variant_id)
    if #recs >= n then
      return recs
    end
  end, timeout)
end

-- A plugin that records every restocked event it receives.
local function recording_plugin(path, options)
  return helpers.recorder_plugin(path) .. "restock.options " .. options
    .. [[

restock.subscribe("restock-notification.restocked", function(data)
  local variant = restock.variants.retrieve(data.variant_id)
  record("restocked", { variant_id = data.variant_id, emails = data.emails,
    quantity = variant and variant.inventory_quantity })
  restock.log.info("restocked %s: %d emails", variant.id, #data.emails)
end)
]]
end

describe("the restock engine", function()
  after_each(helpers.cleanup)

  describe("the seed's Test Plugin walk-through", function()
    it("notifies both subscribers after an update through the product path",
      function()
        local dir = helpers.tmpdir()
        local rec = dir .. "/records.jsonl"
        local server = helpers.start { dir = dir,
          plugin = recording_plugin(rec, "{}") }
        create_variant(server, { id = "variant_01", product_id = "prod_01",
          title = "Red shirt", inventory_quantity = 0 })
        subscribe(server, "variant_01", "alice@example.com")
        subscribe(server, "variant_01", "bob@example.com")
        assert.same({ "alice@example.com", "bob@example.com" },
          (list_emails(server, { variant_id = "variant_01" })))

        local res = admin(server, "POST",
          "/admin/products/prod_01/variants/variant_01",
          { inventory_quantity = 10 })
        helpers.assert_status(res, 200)
        assert.equals(10, res.json.variant.inventory_quantity)

        local recs = wait_restocks(rec, "variant_01", 1)
        assert.truthy(recs, "no restocked event arrived; stderr:\n"
          .. server:stderr())
        assert.equals(1, #recs)
        assert.same({ "alice@example.com", "bob@example.com" },
          recs[1].emails)
        -- The handler could retrieve the variant with its new stock.
        assert.equals(10, recs[1].quantity)

        assert.same({}, (list_emails(server, { variant_id = "variant_01" })))
        local notified, json = list_emails(server,
          { variant_id = "variant_01", status = "notified" })
        assert.same({ "alice@example.com", "bob@example.com" }, notified)
        for _, n in ipairs(json.restock_notifications) do
          assert.truthy(type(n.notified_at) == "string",
            "no notified_at in " .. require("cjson").encode(n))
        end

        local stderr = helpers.wait_stderr(server,
          "restocked variant_01: 2 emails")
        assert.truthy(stderr, "the handler's log line is missing:\n"
          .. server:stderr())
        assert.truthy(stderr:find("Processing " .. RESTOCKED
          .. " which has 1 subscribers", 1, true), stderr)

        -- Delivered exactly once.
        assert.truthy(helpers.wait_for(function()
          return helpers.events(server, { name = RESTOCKED,
            status = "delivered" }).count == 1
        end), "the event was not marked delivered")
        assert.equals(1, #restocks_of(rec, "variant_01"))
      end)
  end)

  describe("inventory_required", function()
    -- Raises a fresh sentinel variant above any threshold and waits for its
    -- event: a check scheduled before it has run by then.
    local sentinels = 0
    local function settle(server, rec)
      sentinels = sentinels + 1
      local id = "sentinel-" .. sentinels
      create_variant(server, { id = id, inventory_quantity = 0 })
      subscribe(server, id, "sentinel@example.com")
      set_quantity(server, id, 100)
      assert.truthy(wait_restocks(rec, id, 1),
        "the sentinel's event did not arrive; stderr:\n" .. server:stderr())
      socket.sleep(0.2) -- a grace period for a slower delivery
    end

    it("needs a quantity strictly above 5", function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir,
        plugin = recording_plugin(rec, "{ inventory_required = 5 }") }
      create_variant(server, { id = "v", inventory_quantity = 0 })
      subscribe(server, "v", "ann@example.com")
      subscribe(server, "v", "ben@example.com")

      set_quantity(server, "v", 5)
      settle(server, rec)
      assert.same({}, restocks_of(rec, "v"))
      assert.same({ "ann@example.com", "ben@example.com" },
        (list_emails(server, { variant_id = "v" })))
      assert.same({}, (list_emails(server, { variant_id = "v",
        status = "notified" })))

      set_quantity(server, "v", 6)
      local recs = wait_restocks(rec, "v", 1)
      assert.truthy(recs, "no event at quantity 6; stderr:\n"
        .. server:stderr())
      assert.same({ "ann@example.com", "ben@example.com" }, recs[1].emails)
      assert.same({}, (list_emails(server, { variant_id = "v" })))
    end)

    it("with 0, ignores quantities below and at 0 and fires above",
      function()
        local dir = helpers.tmpdir()
        local rec = dir .. "/records.jsonl"
        local server = helpers.start { dir = dir,
          plugin = recording_plugin(rec, "{ inventory_required = 0 }") }
        create_variant(server, { id = "v", inventory_quantity = -5 })
        subscribe(server, "v", "ann@example.com")

        set_quantity(server, "v", -2) -- a raise, still below
        settle(server, rec)
        assert.same({}, restocks_of(rec, "v"))
        set_quantity(server, "v", 0) -- at the threshold
        settle(server, rec)
        assert.same({}, restocks_of(rec, "v"))
        assert.same({ "ann@example.com" },
          (list_emails(server, { variant_id = "v" })))

        set_quantity(server, "v", 1)
        local recs = wait_restocks(rec, "v", 1)
        assert.truthy(recs, "no event at quantity 1; stderr:\n"
          .. server:stderr())
        assert.same({ "ann@example.com" }, recs[1].emails)
        assert.same({}, (list_emails(server, { variant_id = "v" })))
      end)
  end)

  describe("trigger_delay", function()
    it("runs the check no sooner than the delay", function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir,
        plugin = recording_plugin(rec, "{ trigger_delay = 800 }") }
      create_variant(server, { id = "v", inventory_quantity = 0 })
      subscribe(server, "v", "ann@example.com")

      local t0 = socket.gettime()
      set_quantity(server, "v", 3)
      socket.sleep(math.max(0, t0 + 0.3 - socket.gettime()))
      assert.same({}, restocks_of(rec, "v"))
      -- The subscription is still active before the check.
      assert.same({ "ann@example.com" },
        (list_emails(server, { variant_id = "v" })))

      local recs = wait_restocks(rec, "v", 1)
      local elapsed = socket.gettime() - t0
      assert.truthy(recs, "no event after the delay; stderr:\n"
        .. server:stderr())
      assert.same({ "ann@example.com" }, recs[1].emails)
      assert.truthy(elapsed >= 0.75, "the event came after only "
        .. elapsed .. " s")
      assert.truthy(elapsed < 3, "the event came after " .. elapsed .. " s")
    end)

    it("collapses raises within the delay into one check, not postponed",
      function()
        local dir = helpers.tmpdir()
        local rec = dir .. "/records.jsonl"
        local server = helpers.start { dir = dir,
          plugin = recording_plugin(rec, "{ trigger_delay = 1000 }") }
        create_variant(server, { id = "v", inventory_quantity = -10 })
        subscribe(server, "v", "ann@example.com")

        -- Three raises within the delay; the first two leave the variant
        -- sold out, so that more shoppers can subscribe in between.
        local t0 = socket.gettime()
        set_quantity(server, "v", -5)
        subscribe(server, "v", "ben@example.com")
        socket.sleep(math.max(0, t0 + 0.35 - socket.gettime()))
        set_quantity(server, "v", -1)
        subscribe(server, "v", "cat@example.com")
        socket.sleep(math.max(0, t0 + 0.7 - socket.gettime()))
        set_quantity(server, "v", 4)
        assert.truthy(socket.gettime() - t0 < 0.95,
          "the spec was too slow to raise within the delay")

        local recs = wait_restocks(rec, "v", 1)
        local elapsed = socket.gettime() - t0
        assert.truthy(recs, "no event; stderr:\n" .. server:stderr())
        assert.same({ "ann@example.com", "ben@example.com",
          "cat@example.com" }, recs[1].emails)
        -- Due 1 s after the first raise; postponed would be >= 1.7 s.
        assert.truthy(elapsed >= 0.95, "the event came after only "
          .. elapsed .. " s")
        assert.truthy(elapsed < 1.5, "the check was postponed: the event "
          .. "came " .. elapsed .. " s after the first raise")

        -- Exactly one event.
        socket.sleep(0.3)
        assert.equals(1, #restocks_of(rec, "v"))
        assert.equals(1, helpers.events(server, { name = RESTOCKED }).count)
      end)
  end)

  describe("throttling", function()
    it("notifies the oldest ceil(quantity * notify_per_unit) per interval",
      function()
        local dir = helpers.tmpdir()
        local rec = dir .. "/records.jsonl"
        local server = helpers.start { dir = dir, plugin = recording_plugin(
          rec, "{ notify_per_unit = 0.5, notify_interval = 1000 }") }
        create_variant(server, { id = "v", inventory_quantity = 0 })
        local all = { "a@example.com", "b@example.com", "c@example.com",
          "d@example.com", "e@example.com" }
        for _, e in ipairs(all) do
          subscribe(server, "v", e)
        end

        -- ceil(3 * 0.5) = 2 per check: [a, b], then [c, d], then [e].
        local t0 = socket.gettime()
        set_quantity(server, "v", 3)
        local recs = wait_restocks(rec, "v", 1)
        local t1 = socket.gettime()
        assert.truthy(recs, "no first event; stderr:\n" .. server:stderr())
        assert.same({ "a@example.com", "b@example.com" }, recs[1].emails)
        assert.truthy(t1 - t0 < 0.8, "the first check came late")
        assert.same({ "c@example.com", "d@example.com", "e@example.com" },
          (list_emails(server, { variant_id = "v" })))
        assert.same({ "a@example.com", "b@example.com" },
          (list_emails(server, { variant_id = "v", status = "notified" })))

        recs = wait_restocks(rec, "v", 2, 4)
        local t2 = socket.gettime()
        assert.truthy(recs, "no second event; stderr:\n" .. server:stderr())
        assert.same({ "c@example.com", "d@example.com" }, recs[2].emails)
        assert.truthy(t2 - t1 >= 0.8, "the second check came after only "
          .. (t2 - t1) .. " s")
        assert.same({ "e@example.com" },
          (list_emails(server, { variant_id = "v" })))

        recs = wait_restocks(rec, "v", 3, 4)
        local t3 = socket.gettime()
        assert.truthy(recs, "no third event; stderr:\n" .. server:stderr())
        assert.same({ "e@example.com" }, recs[3].emails)
        assert.truthy(t3 - t2 >= 0.8, "the third check came after only "
          .. (t3 - t2) .. " s")
        assert.same({}, (list_emails(server, { variant_id = "v" })))
        assert.same(all, (list_emails(server,
          { variant_id = "v", status = "notified" })))

        -- Nobody is left: no further event.
        socket.sleep(1.2)
        assert.equals(3, #restocks_of(rec, "v"))
      end)
  end)

  describe("a check that fails", function()
    -- Runs SQL on the server's database while it runs: psql on
    -- PostgreSQL, Python's sqlite3 on SQLite (the sqlite3 shell is not a
    -- dependency).
    local function exec_sql(server, sql)
      if helpers.pg then
        return helpers.psql(server.db, sql)
      end
      local path = helpers.tmpdir() .. "/exec.py"
      local f = assert(io.open(path, "w"))
      f:write("import sqlite3\n",
        string.format("c = sqlite3.connect(%q, timeout=10)\n", server.db),
        string.format("c.executescript(%q)\nc.close()\n",
          (sql:gsub("\n", " "))))
      f:close()
      local p = assert(io.popen("python3 " .. path .. " 2>&1"))
      local out = p:read("a")
      assert(p:close(), "sqlite3 failed: " .. out)
      return out
    end

    it("is retried after a pause, not at once, and runs once it can",
      function()
        local dir = helpers.tmpdir()
        local rec = dir .. "/records.jsonl"
        local server = helpers.start { dir = dir,
          plugin = recording_plugin(rec, "{ trigger_delay = 0 }") }
        create_variant(server, { id = "v", inventory_quantity = 0 })
        subscribe(server, "v", "a@example.com")
        -- The take's move to the history fails while this trigger is there.
        if helpers.pg then
          exec_sql(server, [[
CREATE FUNCTION spec_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by the spec'; END $$;
CREATE TRIGGER spec_refuse BEFORE INSERT ON restock_history
  FOR EACH ROW EXECUTE FUNCTION spec_refuse();]])
        else
          exec_sql(server, [[
CREATE TRIGGER spec_refuse BEFORE INSERT ON restock_history
BEGIN SELECT RAISE(ABORT, 'refused by the spec'); END;]])
        end
        set_quantity(server, "v", 3)
        local line = "restock check of v failed; it will be retried"
        assert.truthy(helpers.wait_stderr(server, line),
          "the failure was not logged:\n" .. server:stderr())
        socket.sleep(2.5)
        -- Once a second: at most 4 tries in 2.5 s (a retry at once would
        -- have made thousands).
        local tries = helpers.occurrences(server:stderr(), line)
        assert.truthy(tries >= 2 and tries <= 4, tries .. " tries in 2.5 s")
        assert.same({ "a@example.com" }, (list_emails(server,
          { variant_id = "v" })))
        assert.equals(0, #restocks_of(rec, "v"))

        exec_sql(server, "DROP TRIGGER spec_refuse"
          .. (helpers.pg and " ON restock_history" or ""))
        local recs = wait_restocks(rec, "v", 1, 5)
        assert.truthy(recs, "no restock after the failure ended:\n"
          .. server:stderr())
        assert.same({ "a@example.com" }, recs[1].emails)
      end)
  end)
end)
