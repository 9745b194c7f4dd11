-- GET /admin/restock-notifications/export (contract section 5): every
-- matching row, streamed with chunked transfer as CSV (RFC 4180) or NDJSON,
-- while the server goes on answering.
local helpers = require "spec.support.helpers"
local cjson = require "cjson"
local socket = require "socket"

local admin = helpers.admin

local HEADER = "variant_id,sales_channel_id,email,status,quantity,locale,"
  .. "created_at,notified_at"

local function variant(server, id, quantity)
  helpers.assert_status(admin(server, "POST", "/admin/variants",
    { id = id, inventory_quantity = quantity or 0 }), 200)
end

local function subscribe(server, id, body)
  helpers.assert_status(helpers.request(server, "POST",
    "/restock-notifications/variants/" .. helpers.urlencode(id),
    { json = body }), 201)
end

local function export(server, query)
  return admin(server, "GET", "/admin/restock-notifications/export"
    .. helpers.query(query or {}))
end

-- Splits RFC 4180 text into records of fields.
local function parse_csv(text)
  local rows, row, field = {}, {}, {}
  local i, n, quoted = 1, #text, false
  while i <= n do
    local c = text:sub(i, i)
    if quoted then
      if c == '"' and text:sub(i + 1, i + 1) == '"' then
        field[#field + 1] = '"'
        i = i + 1
      elseif c == '"' then
        quoted = false
      else
        field[#field + 1] = c
      end
    elseif c == '"' then
      quoted = true
    elseif c == "," then
      row[#row + 1] = table.concat(field)
      field = {}
    elseif c == "\r" and text:sub(i + 1, i + 1) == "\n" then
      row[#row + 1] = table.concat(field)
      rows[#rows + 1] = row
      row, field = {}, {}
      i = i + 1
    else
      field[#field + 1] = c
    end
    i = i + 1
  end
  assert(#field == 0 and #row == 0, "the CSV does not end with CRLF")
  return rows
end

-- Writes n more active subscriptions of variant v straight into the
-- database (SQLite's shell, or psql).
local function bulk(db, n)
  if helpers.pg then
    helpers.psql(db, string.format("INSERT INTO restock_subscriptions"
      .. " (id, variant_id, email, created_at) SELECT"
      .. " nextval('restock_subscription_ids'), 'v', 'bulk' || i"
      .. " || '@example.com', '2026-01-01T00:00:00.000Z'"
      .. " FROM generate_series(1, %d) AS i", n))
    return
  end
  local sql = string.format("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL"
    .. " SELECT i + 1 FROM n WHERE i < %d) INSERT INTO restock_subscriptions"
    .. " (variant_id, email, created_at) SELECT 'v', 'bulk' || i ||"
    .. " '@example.com', '2026-01-01T00:00:00.000Z' FROM n", n)
  local rc = os.execute(string.format("sqlite3 %q %q >/dev/null", db, sql))
  assert(rc == true or rc == 0, "sqlite3 failed: " .. sql)
end

describe("the export", function()
  after_each(helpers.cleanup)

  local function setup()
    local dir = helpers.tmpdir()
    local server = helpers.start { dir = dir,
      plugin = 'local restock = require "restock"\n'
        .. 'restock.options { subscription_ttl = 0 }\n' }
    -- An id with a comma and quotes, to be quoted.
    variant(server, 'odd,"id"', 0)
    variant(server, "v", 0)
    helpers.assert_status(admin(server, "POST", "/admin/sales-channels",
      { id = "web" }), 200)
    subscribe(server, 'odd,"id"', { email = "a@example.com", quantity = 3,
      locale = "de" })
    subscribe(server, "v", { email = "b@example.com" })
    subscribe(server, "v", { email = "c@example.com",
      sales_channel_id = "web" })
    -- b and c are notified: history.
    helpers.assert_status(admin(server, "POST", "/admin/variants/v",
      { inventory_quantity = 5 }), 200)
    assert.truthy(helpers.wait_for(function()
      local r = admin(server, "GET",
        "/admin/restock-notifications?status=notified")
      return r.json.count == 2
    end), "not notified")
    helpers.assert_status(admin(server, "POST", "/admin/variants/v",
      { inventory_quantity = 0 }), 200)
    subscribe(server, "v", { email = "d@example.com" })
    return server
  end

  it("streams every row as CSV with a header line", function()
    local server = setup()
    local res = export(server)
    helpers.assert_status(res, 200)
    assert.equals("chunked", res.headers["transfer-encoding"])
    assert.is_nil(res.headers["content-length"])
    assert.truthy(res.headers["content-type"]:find("text/csv", 1, true))
    assert.truthy(res.headers["content-disposition"]:find("attachment", 1,
      true))
    assert.equals(HEADER .. "\r\n", res.body:sub(1, #HEADER + 2))
    -- The odd id is quoted, its quotes doubled.
    assert.truthy(res.body:find('\r\n"odd,""id""",,a@example.com,active,3,de,',
      1, true), res.body)
    local rows = parse_csv(res.body)
    assert.equals(5, #rows)
    local by_email = {}
    for i = 2, #rows do
      assert.equals(8, #rows[i])
      by_email[rows[i][3]] = rows[i]
    end
    assert.same({ 'odd,"id"', "", "a@example.com", "active", "3", "de" },
      { table.unpack(by_email["a@example.com"], 1, 6) })
    assert.equals("notified", by_email["b@example.com"][4])
    assert.truthy(by_email["b@example.com"][8]:match("^%d%d%d%d%-"))
    assert.equals("web", by_email["c@example.com"][2])
    assert.equals("active", by_email["d@example.com"][4])
    assert.equals("", by_email["d@example.com"][8])
  end)

  it("filters by status and variant, and writes NDJSON", function()
    local server = setup()
    local res = export(server, { status = "notified" })
    helpers.assert_status(res, 200)
    local rows = parse_csv(res.body)
    assert.equals(3, #rows)
    for i = 2, 3 do
      assert.equals("notified", rows[i][4])
    end
    res = export(server, { variant_id = 'odd,"id"' })
    assert.equals(2, #parse_csv(res.body))
    res = export(server, { variant_id = "none" })
    assert.equals(HEADER .. "\r\n", res.body)
    res = export(server, { variant_id = string.rep("x", 300) })
    assert.equals(HEADER .. "\r\n", res.body)
    res = export(server, { status = "pending" })
    assert.equals(HEADER .. "\r\n", res.body)

    res = export(server, { format = "ndjson", variant_id = "v" })
    helpers.assert_status(res, 200)
    assert.truthy(res.headers["content-type"]:find("application/x-ndjson", 1,
      true))
    local lines = {}
    for line in res.body:gmatch("[^\n]+") do
      lines[#lines + 1] = cjson.decode(line)
    end
    assert.equals(3, #lines)
    for _, l in ipairs(lines) do
      assert.equals("v", l.variant_id)
      assert.truthy(l.created_at)
      for _, k in ipairs({ "sales_channel_id", "email", "status", "quantity",
        "locale", "notified_at" }) do
        assert.truthy(l[k] ~= nil, k .. " missing from " .. cjson.encode(l))
      end
    end
    res = export(server, { format = "ndjson", variant_id = 'odd,"id"' })
    local a = cjson.decode(res.body)
    assert.equals(3, a.quantity)
    assert.equals(cjson.null, a.notified_at)
  end)

  it("answers 400 for an unknown format or status, 401 without the token",
    function()
      local server = setup()
      helpers.assert_error(export(server, { format = "xlsx" }), 400,
        "invalid_data", "format must be csv or ndjson")
      helpers.assert_error(export(server, { status = "waiting" }), 400,
        "invalid_data")
      helpers.assert_error(export(server, { status = "" }), 400,
        "invalid_data")
      local res = helpers.request(server, "GET",
        "/admin/restock-notifications/export")
      helpers.assert_error(res, 401, "unauthorized")
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
    end)

  it("streams a large export to a slow reader while answering others",
    function()
      local server = setup()
      -- 200,000 more rows, written straight into the database.
      bulk(server.db, 200000)
      local conn = helpers.connect(server, 30)
      assert(conn:send_request("GET", "/admin/restock-notifications/export",
        { headers = { Authorization = "Bearer " .. helpers.ADMIN_TOKEN } }))
      -- Read a little, then stop reading: the server must go on answering.
      local line = conn:read_line()
      assert.equals("HTTP/1.1 200 OK", line)
      socket.sleep(0.3)
      for _ = 1, 20 do
        local t0 = socket.gettime()
        helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
        assert.truthy(socket.gettime() - t0 < 2)
      end
      -- Then read it all.
      while true do
        local h = conn:read_line()
        if h == "" then break end
      end
      local rows, bytes = 0, 0
      while true do
        local size = tonumber(conn:read_line(), 16)
        if size == 0 then
          conn:read_line()
          break
        end
        local chunk = conn:read_bytes(size)
        bytes = bytes + #chunk
        for _ in chunk:gmatch("\r\n") do
          rows = rows + 1
        end
        conn:read_line()
      end
      -- The header, 4 rows of setup and the bulk.
      assert.equals(1 + 4 + 200000, rows)
      assert.truthy(bytes > 200000 * 40)
      -- The connection is still usable.
      local res = conn:request("GET", "/health")
      helpers.assert_status(res, 200)
      assert.truthy(helpers.wait_stderr(server, "export: 200004 rows"))
    end)

  it("lets go of a client that leaves mid-way", function()
    local server = setup()
    bulk(server.db, 100000)
    local conn = helpers.connect(server, 10)
    assert(conn:send_request("GET", "/admin/restock-notifications/export",
      { headers = { Authorization = "Bearer " .. helpers.ADMIN_TOKEN } }))
    assert.equals("HTTP/1.1 200 OK", conn:read_line())
    conn:close()
    assert.truthy(helpers.wait_stderr(server, "export: the client left"),
      server:stderr())
    helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
  end)
end)
