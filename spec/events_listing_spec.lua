-- GET /admin/events filters (contract section 5): by name and status, with
-- count, limit and offset. Each filter has its own query plan (open events,
-- a name other than restock-notification.subscribed through the partial
-- index events_named, or a walk of the table), so each is checked here
-- against the same mixed outbox.
local helpers = require "spec.support.helpers"

local admin = helpers.admin

local SUBSCRIBED = "restock-notification.subscribed"
local RESTOCKED = "restock-notification.restocked"

-- Every subscribed event makes its handler emit a shop.custom event, which
-- no handler takes (so it is delivered when written).
local PLUGIN = [[
local restock = require "restock"
restock.subscribe("restock-notification.subscribed", function(data)
  restock.emit("shop.custom", { email = data.email })
end, { name = "emitter" })
]]

local function events(server, query)
  local res = admin(server, "GET", "/admin/events" .. helpers.query(query))
  helpers.assert_status(res, 200)
  return res.json
end

local function ids(list)
  local t = {}
  for i, e in ipairs(list.events) do
    t[i] = e.id
  end
  return t
end

describe("GET /admin/events filters", function()
  local server

  setup(function()
    server = helpers.start { plugin = PLUGIN }
    helpers.assert_status(admin(server, "POST", "/admin/variants",
      { id = "v", inventory_quantity = 0 }), 200)
    for _, email in ipairs { "a@example.com", "b@example.com",
      "c@example.com" } do
      helpers.assert_status(helpers.request(server, "POST",
        "/restock-notifications/variants/v", { json = { email = email } }),
        201)
    end
    helpers.assert_status(admin(server, "POST", "/admin/variants/v",
      { inventory_quantity = 5 }), 200)
    -- 3 subscribed, 3 shop.custom, 1 product-variant.updated and 1
    -- restocked, all delivered.
    assert.truthy(helpers.wait_for(function()
      return events(server, { status = "delivered" }).count == 8
    end, 10), "the outbox never settled:\n" .. server:stderr())
  end)

  teardown(function()
    helpers.cleanup()
  end)

  it("lists every event, oldest first, without a filter", function()
    local all = events(server, {})
    assert.equals(8, all.count)
    local seen = ids(all)
    for i = 2, #seen do
      assert.truthy(seen[i - 1] < seen[i])
    end
  end)

  for _, case in ipairs {
    { "shop.custom", 3 }, { RESTOCKED, 1 }, { SUBSCRIBED, 3 },
    { "product-variant.updated", 1 },
    { "no.such.event", 0 },
  } do
    local name, n = case[1], case[2]
    it("lists only " .. name .. " events by name, with or without status",
      function()
        for _, query in ipairs { { name = name },
          { name = name, status = "delivered" } } do
          local list = events(server, query)
          assert.equals(n, list.count)
          assert.equals(n, #list.events)
          for _, e in ipairs(list.events) do
            assert.equals(name, e.name)
            assert.equals("delivered", e.status)
          end
        end
        local none = events(server, { name = name, status = "dead" })
        assert.equals(0, none.count)
        assert.equals(0, #none.events)
      end)
  end

  it("pages a named listing with limit and offset, oldest first", function()
    local all = ids(events(server, { name = "shop.custom" }))
    local page = events(server, { name = "shop.custom", limit = 2,
      offset = 1 })
    assert.equals(3, page.count)
    assert.same({ all[2], all[3] }, ids(page))
    local custom = events(server, { name = "shop.custom" }).events
    local emails = {}
    for i, e in ipairs(custom) do
      emails[i] = e.data.email
    end
    table.sort(emails)
    assert.same({ "a@example.com", "b@example.com", "c@example.com" },
      emails)
  end)
end)

-- A server whose outbox holds 1,000,000 delivered subscribed events,
-- written straight into SQLite before it starts.
local function big_outbox_server()
  local dir = helpers.tmpdir()
  local db = helpers.fresh_db(dir)
  local rc, _, stderr = helpers.run({ "migrations", "run", "--db", db })
  assert.equals(0, rc, stderr)
  if helpers.pg then
    helpers.psql(db, string.format([[
INSERT INTO events (name, data, status, created_at)
  SELECT 'restock-notification.subscribed', ('{"variant_id":"v",'
    || '"email":"someone@example.com","unsubscribe_token":"%s"}')::jsonb,
    'delivered', '2026-01-01T00:00:00.000Z'
  FROM generate_series(1, 1000000);
]], string.rep("x", 120)))
    return helpers.start { dir = dir, db = db, no_migrate = true }
  end
  -- 1,000,000 delivered subscribed events, written straight into SQLite.
  local fill = string.format([[python3 -c '
import sqlite3
c = sqlite3.connect("%s")
data = "{\"variant_id\":\"v\",\"email\":\"someone@example.com\",\"unsubscribe_token\":\"%s\"}"
c.executemany("INSERT INTO events (name, data, status, created_at) VALUES (?, ?, ?, ?)",
  (("restock-notification.subscribed", data, "delivered", "2026-01-01T00:00:00.000Z") for _ in range(1000000)))
c.commit()
']], db, string.rep("x", 120))
  assert.is_true(os.execute(fill))
  local server = helpers.start { dir = dir, db = db, no_migrate = true }
  return server
end

local function list_request(conn, query)
  conn:send_request("GET", "/admin/events" .. (query or "?limit=1"),
    { headers = { Authorization = "Bearer " .. helpers.ADMIN_TOKEN } })
end

-- A listing's count can walk the whole outbox: it runs on the thread pool,
-- so the loop keeps answering meanwhile.
describe("GET /admin/events on a large outbox", function()
  teardown(function()
    helpers.cleanup()
  end)

  it("is answered off the loop: other requests go on meanwhile", function()
    local server = big_outbox_server()

    local listing = helpers.connect(server, 60)
    list_request(listing)
    -- /health, over and over on another connection, until the listing's
    -- answer starts to arrive.
    local other = helpers.connect(server)
    local answered = 0
    while not listing:fill(0) do
      helpers.assert_status(other:request("GET", "/health"), 200)
      answered = answered + 1
      assert.truthy(answered < 1000000, "the listing never answered")
    end
    local res = assert(listing:read_response())
    helpers.assert_status(res, 200)
    local body = require("cjson").decode(res.body)
    assert.equals(1000000, body.count)
    assert.equals(1, #body.events)
    -- Counting a million rows takes tens of milliseconds at least, in which
    -- a loop that is free answers many requests; a blocked one, none.
    assert.truthy(answered >= 10,
      "only " .. answered .. " requests answered while the listing counted")
  end)

  it("drops the answer of a client that left, and goes on", function()
    local server = big_outbox_server()
    for _ = 1, 3 do
      local conn = helpers.connect(server)
      list_request(conn)
      conn:close()
    end
    helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
    local fine = helpers.connect(server, 60)
    list_request(fine)
    local res = assert(fine:read_response())
    helpers.assert_status(res, 200)
    -- cleanup stops the server: exit 0 and no sanitizer report.
  end)
  it("is answered, or its connection closed, when the server stops "
    .. "meanwhile", function()
    local server = big_outbox_server()
    local conn = helpers.connect(server, 30)
    list_request(conn)
    assert.equals(0, server:stop("TERM"))
    local res, err = conn:read_response()
    if res then
      helpers.assert_status(res, 200)
      assert.equals(1000000, require("cjson").decode(res.body).count)
    else
      assert.equals("closed", err)
    end
    -- cleanup checks its stderr for sanitizer reports.
  end)
end)

describe("GET /admin/events, pipelined", function()
  teardown(function()
    helpers.cleanup()
  end)

  it("answers what follows a listing after it, in order", function()
    local server = helpers.start()
    local conn = helpers.connect(server)
    local auth = { headers = { Authorization = "Bearer " .. helpers.ADMIN_TOKEN } }
    assert.truthy(conn:send_raw(
      helpers.build_request(server, "GET", "/admin/events", auth, true)
      .. helpers.build_request(server, "GET", "/health", nil, true)
      .. helpers.build_request(server, "GET",
        "/admin/restock-notifications?limit=7", auth, true)
      .. helpers.build_request(server, "GET", "/no-such-route", nil, true)))
    local first = assert(conn:read_response())
    helpers.assert_status(first, 200)
    assert.equals(0, require("cjson").decode(first.body).count, first.body)
    local second = assert(conn:read_response())
    helpers.assert_status(second, 200)
    assert.equals("ok", require("cjson").decode(second.body).status)
    local third = assert(conn:read_response())
    helpers.assert_status(third, 200)
    assert.equals(7, require("cjson").decode(third.body).limit)
    local fourth = assert(conn:read_response())
    assert.equals(404, fourth.status)
    assert.equals(200, conn:request("GET", "/health").status)
  end)
end)
