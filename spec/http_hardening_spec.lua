-- The HTTP layer against hostile clients (issue 13, "The HTTP layer"):
-- Upgrade and CONNECT requests are answered once and nothing after them is
-- read; slow clients meet deadlines for a request's head and body and can
-- no longer keep new clients out of a full connection table; running out
-- of file descriptors is logged; absolute-form targets are routed by their
-- path.
local helpers = require "spec.support.helpers"
local lfs = require "lfs"
local socket = require "socket"

local admin = helpers.admin

-- The raw bytes of a request, with Host and Content-Length given by the
-- caller (nothing is added).
local function raw(method, target, headers, body)
  local lines = { string.format("%s %s HTTP/1.1", method, target) }
  for _, h in ipairs(headers) do
    lines[#lines + 1] = h
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

-- Reads every answer on conn until the server closes it; returns them all.
-- A read that neither answers nor ends within the connection's timeout is
-- an error.
local function all_answers(conn)
  local answers = {}
  while true do
    local res, err = conn:read_response()
    if not res then
      assert(err == "closed", "expected the server to close, got "
        .. tostring(err))
      break
    end
    answers[#answers + 1] = res
  end
  return answers
end

-- Sends bytes one at a time, every `every` seconds, until the server
-- answers or closes, or `limit` seconds have passed. Returns true if the
-- server did either.
local function trickle(conn, bytes, every, limit)
  local deadline = socket.gettime() + limit
  local i = 1
  while socket.gettime() < deadline do
    if conn:closed(every) or #conn.buf > 0 then
      return true
    end
    local b = bytes:sub(i, i)
    if b == "" then
      b = bytes:sub(1, 1)
      i = 1
    end
    i = i + 1
    if not conn:send_raw(b) then
      return true -- the server has closed and reset the connection
    end
  end
  return false
end

-- The number of access lines in a server's log that begin with `what`
-- (a method, or a method and the start of a path), once there is one: log
-- lines are written at the end of the loop's turn, maybe after the answer.
local function access_lines(server, what)
  helpers.wait_stderr(server, " access " .. what)
  local n = 0
  for line in server:stderr():gmatch("[^\n]+") do
    if line:find(" access " .. what, 1, true) then
      n = n + 1
    end
  end
  return n
end

-- The lowest limit of open files that leaves a running process `free`
-- descriptors: descriptor numbers must be below the limit, and those in
-- use need not be packed (some may be inherited, high up).
local function limit_leaving(pid, free)
  local used = {}
  for name in lfs.dir("/proc/" .. pid .. "/fd") do
    if name:match("^%d+$") then
      used[tonumber(name)] = true
    end
  end
  local limit = 0
  while free > 0 do
    if not used[limit] then
      free = free - 1
    end
    limit = limit + 1
  end
  return limit
end

-- Sets the soft limit of open files of a running process.
local function set_nofile(pid, soft)
  assert(os.execute(string.format("prlimit --pid %d --nofile=%s:", pid,
    tostring(soft))), "prlimit failed")
end

local function soft_nofile(pid)
  local limits = helpers.read_file("/proc/" .. pid .. "/limits")
  return assert(limits:match("Max open files%s+(%d+)"))
end

describe("http hardening", function()
  after_each(helpers.cleanup)

  describe("an Upgrade or CONNECT request", function()
    local SUBSCRIBE = "/restock-notifications/variants/sold-out"

    it("is answered once, with Connection: close, and stores one "
      .. "subscription", function()
      local server = helpers.start()
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "sold-out", inventory_quantity = 0 }), 200)
      local body = '{"email":"ann@example.com"}'
      local conn = helpers.connect(server)
      -- The request, then one more byte: the old server took that byte as
      -- the start of another request and ran the subscribe again.
      assert.truthy(conn:send_raw(raw("POST", SUBSCRIBE, {
        "Host: shop.example", "Content-Type: application/json",
        "Connection: Upgrade", "Upgrade: websocket",
        "Content-Length: " .. #body }, body) .. "x"))
      local answers = all_answers(conn)
      assert.equals(1, #answers, "answers: " .. #answers)
      helpers.assert_status(answers[1], 201)
      assert.equals("close", answers[1].headers.connection)

      local list = admin(server, "GET", "/admin/restock-notifications")
      helpers.assert_status(list, 200)
      assert.equals(1, list.json.count, list.body)
      assert.equals(1, access_lines(server,
        "POST /restock-notifications/"))
    end)

    it("with a publishable key stores one subscription, in the key's "
      .. "channel", function()
      local server = helpers.start()
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "sold-out", inventory_quantity = 0 }), 200)
      helpers.assert_status(admin(server, "POST", "/admin/stock-locations",
        { id = "loc_eu", name = "Europe" }), 200)
      helpers.assert_status(admin(server, "POST", "/admin/sales-channels",
        { id = "sc_eu", name = "EU", location_ids = { "loc_eu" } }), 200)
      helpers.assert_status(admin(server, "POST", "/admin/publishable-api-keys",
        { id = "pk_eu", sales_channel_ids = { "sc_eu" } }), 200)
      local body = '{"email":"ben@example.com"}'
      local conn = helpers.connect(server)
      assert.truthy(conn:send_raw(raw("POST", SUBSCRIBE, {
        "Host: shop.example", "Content-Type: application/json",
        "x-publishable-api-key: pk_eu", "Connection: Upgrade",
        "Upgrade: websocket", "Content-Length: " .. #body }, body) .. "x"))
      local answers = all_answers(conn)
      assert.equals(1, #answers, "answers: " .. #answers)
      helpers.assert_status(answers[1], 201)
      assert.equals("sc_eu",
        answers[1].json.restock_notification.sales_channel_id)

      -- The old server ran it a second time without its headers: a second,
      -- unscoped subscription.
      local list = admin(server, "GET", "/admin/restock-notifications")
      helpers.assert_status(list, 200)
      assert.equals(1, list.json.count, list.body)
      assert.equals("sc_eu", list.json.restock_notifications[1].sales_channel_id)
    end)

    it("CONNECT is answered once, and the request pipelined behind it is "
      .. "never read", function()
      local server = helpers.start()
      local conn = helpers.connect(server)
      assert.truthy(conn:send_raw(
        raw("CONNECT", "example.com:443", { "Host: example.com:443" })
        .. raw("GET", "/health", { "Host: shop.example" })))
      local answers = all_answers(conn)
      assert.equals(1, #answers, "answers: " .. #answers)
      -- No tunnel: an error answer, and the connection closes after it, so
      -- the bytes behind the CONNECT are never taken as a request.
      assert.truthy(answers[1].status >= 400, helpers.describe(answers[1]))
      assert.equals("close", answers[1].headers.connection)
      assert.equals(1, access_lines(server, "CONNECT"))
      -- Had it been read, the request behind it would have been logged in
      -- the same turn.
      assert.falsy(server:stderr():find(" access GET", 1, true))
      -- The server goes on serving other connections.
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
    end)
  end)

  describe("slow clients", function()
    it("cannot keep a new client out by filling the connection table",
      function()
        local server = helpers.start({ env = {
          RESTOCK_MAX_CONNECTIONS = "4", RESTOCK_HEADER_TIMEOUT = "20000" } })
        -- Four connections that begin a request and send a header byte now
        -- and then, each byte keeping the idle timer at bay.
        local slow = {}
        for i = 1, 4 do
          slow[i] = helpers.connect(server)
          assert.truthy(slow[i]:send_raw("GET /health HTTP/1.1\r\nX-Slow: "))
        end
        for _ = 1, 3 do
          for i = 1, 4 do
            assert.truthy(slow[i]:send_raw("a"))
          end
          socket.sleep(0.05)
        end

        -- A real client is still served: the slowest of them, the one
        -- that began its request first, gives way.
        local res = helpers.request(server, "GET", "/health")
        helpers.assert_status(res, 200)
        assert.is_true(slow[1]:closed(2), "the oldest slow connection is open")
        for i = 2, 4 do
          assert.is_false(slow[i]:closed(0.1),
            "slow connection " .. i .. " was closed")
        end
        -- And so is the next one, again and again.
        for _ = 1, 3 do
          helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
        end
        assert.truthy(helpers.wait_stderr(server, "at the limit of 4 "
          .. "connections: closed 1 idle or slow connection(s) to admit new "
          .. "ones"), server:stderr())
      end)

    it("answers 408 to a request head that trickles past "
      .. "RESTOCK_HEADER_TIMEOUT", function()
      local server = helpers.start({ env = {
        RESTOCK_HEADER_TIMEOUT = "300" } })
      local conn = helpers.connect(server)
      assert.truthy(conn:send_raw("GET /health HTTP/1.1\r\nX-Slow: "))
      -- One byte every 50 ms: never idle, never done.
      assert.is_true(trickle(conn, "a", 0.05, 5),
        "the server let the head trickle for 5 s")
      local res = conn:read_response()
      helpers.assert_error(res, 408, "invalid_data",
        "The request head was not received in time")
      assert.equals("close", res.headers.connection)
      assert.is_true(conn:closed(2))
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
    end)

    it("answers 408 to a body that trickles past RESTOCK_BODY_TIMEOUT",
      function()
        local server = helpers.start({ env = {
          RESTOCK_BODY_TIMEOUT = "300" } })
        local conn = helpers.connect(server)
        assert.truthy(conn:send_raw(raw("POST", "/admin/variants", {
          "Host: shop.example", "Authorization: Bearer " .. helpers.ADMIN_TOKEN,
          "Content-Type: application/json", "Content-Length: 1000" },
          '{"id": "slow"')))
        assert.is_true(trickle(conn, " ", 0.05, 5),
          "the server let the body trickle for 5 s")
        local res = conn:read_response()
        helpers.assert_error(res, 408, "invalid_data",
          "The request body was not received in time")
        assert.is_true(conn:closed(2))
        -- Nothing was stored.
        helpers.assert_status(admin(server, "GET", "/admin/variants/slow"), 404)
      end)

    it("answers 408 to a body that stalls past RESTOCK_BODY_TIMEOUT",
      function()
        -- The idle timeout is left at its 60 s: only the body's deadline
        -- can end this.
        local server = helpers.start({ env = {
          RESTOCK_BODY_TIMEOUT = "300" } })
        local conn = helpers.connect(server)
        assert.truthy(conn:send_raw(raw("POST",
          "/restock-notifications/variants/x", { "Host: shop.example",
          "Content-Type: application/json", "Content-Length: 40" },
          '{"email":')))
        assert.is_true(conn:closed(5), "the stalled body was kept for 5 s")
        local res = conn:read_response()
        helpers.assert_error(res, 408, "invalid_data",
          "The request body was not received in time")
      end)

    it("does not cut off a keep-alive client idle between requests",
      function()
        -- The head deadline runs from a request's first byte, not from the
        -- end of the last one or from the connection's start.
        local server = helpers.start({ env = {
          RESTOCK_HEADER_TIMEOUT = "200", RESTOCK_BODY_TIMEOUT = "200" } })
        local conn = helpers.connect(server)
        helpers.assert_status(conn:request("GET", "/health"), 200)
        assert.is_false(conn:closed(0.5), "closed while idle")
        helpers.assert_status(conn:request("POST", "/admin/variants", {
          headers = { Authorization = "Bearer " .. helpers.ADMIN_TOKEN },
          json = { id = "v1", inventory_quantity = 0 } }), 200)
        assert.is_false(conn:closed(0.5), "closed while idle")
        helpers.assert_status(conn:request("GET", "/health"), 200)
      end)

    it("are refused with 503 only when every connection is busy, in "
      .. "rate-limited lines that count them", function()
      local server = helpers.start({ env = {
        RESTOCK_MAX_CONNECTIONS = "2" } })
      -- Two clients that ask for many large answers and do not read them:
      -- the server is busy answering both, and cannot close either.
      local variants, updates = {}, {}
      for i = 1, 1000 do
        variants[i] = { id = "big" .. i }
        updates[i] = { variant_id = "big" .. i, inventory_quantity = i }
      end
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { variants = variants }), 200)
      helpers.assert_status(admin(server, "POST", "/admin/inventory/batch",
        { updates = updates }), 200)
      local want = admin(server, "GET", "/admin/events?limit=1000")
      helpers.assert_status(want, 200)
      local one = helpers.build_request(server, "GET",
        "/admin/events?limit=1000", { headers = {
          Authorization = "Bearer " .. helpers.ADMIN_TOKEN } }, true)
      local busy = {}
      for i = 1, 2 do
        busy[i] = helpers.connect(server, 30)
        assert.truthy(busy[i].sock:setoption("recv-buffer-size", 65536))
        assert.truthy(busy[i]:send_raw(string.rep(one, 60)))
        -- Its first answers arrive: the server has read its requests.
        local readable = socket.select({ busy[i].sock }, nil, 5)
        assert.equals(1, #readable, "no answer on busy connection " .. i)
      end

      for _ = 1, 3 do
        helpers.assert_error(helpers.request(server, "GET", "/health"), 503,
          "unexpected_state", "Too many open connections")
      end
      -- The first refusal is logged at once.
      local line = "at the limit of 2 connections, all of them busy: refused "
      assert.truthy(helpers.wait_stderr(server, line .. "1 new connection(s) "
        .. "with 503"), server:stderr())

      -- The busy clients lose nothing.
      for i = 1, 2 do
        for n = 1, 60 do
          local res, err = busy[i]:read_response()
          assert.truthy(res, string.format("client %d, answer %d: %s", i, n,
            tostring(err)))
          assert.equals(want.body, res.body)
        end
      end

      -- The two refusals after the first are logged together, a moment
      -- later: not a line per connection.
      assert.truthy(helpers.wait_stderr(server, line .. "2 new connection(s) "
        .. "with 503", 10), server:stderr())
      local _, lines = server:stderr():gsub("all of them busy", "")
      assert.equals(2, lines, server:stderr())
    end)

    it("out of file descriptors, logs it and still serves a new client",
      function()
        local server = helpers.start()
        local before = soft_nofile(server.pid)
        -- Room for three more connections, then accept fails (EMFILE).
        set_nofile(server.pid, limit_leaving(server.pid, 3))
        local ok, err = pcall(function()
          local idle = {}
          for i = 1, 6 do
            idle[i] = helpers.connect(server)
          end
          -- Past the third, each newcomer takes the place of the
          -- connection idle longest, and so does a real client.
          local res = helpers.request(server, "GET", "/health")
          helpers.assert_status(res, 200)
          assert.is_true(idle[1]:closed(2), "the oldest idle one is open")
          assert.truthy(helpers.wait_stderr(server, "http: accept failed"),
            server:stderr())
          assert.truthy(server:stderr():find("too many open files", 1, true),
            server:stderr())
          assert.truthy(server:stderr():find("raise the open-file limit", 1,
            true), server:stderr())
        end)
        set_nofile(server.pid, before)
        assert(ok, err)
      end)
  end)

  describe("an absolute-form target", function()
    local server
    before_each(function()
      server = helpers.start()
    end)

    it("is routed by its path and query", function()
      local conn = helpers.connect(server)
      local res = conn:request("GET", "http://shop.example/health")
      helpers.assert_status(res, 200)
      assert.same({ status = "ok" }, res.json)
      res = conn:request("GET", "HTTP://shop.example:9000/health?probe=1")
      helpers.assert_status(res, 200)
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v1", inventory_quantity = 0 }), 200)
      res = conn:request("GET",
        "https://shop.example/admin/restock-notifications?variant_id=v1",
        { headers = { Authorization = "Bearer " .. helpers.ADMIN_TOKEN } })
      helpers.assert_status(res, 200)
      assert.equals(0, res.json.count)
    end)

    it("to an admin path still needs the token", function()
      local res = helpers.request(server, "GET",
        "http://shop.example/admin/variants/v1")
      helpers.assert_error(res, 401, "unauthorized")
      res = admin(server, "GET", "http://shop.example/admin/variants/v1")
      helpers.assert_error(res, 404, "not_found",
        "Variant with id: v1 was not found")
    end)

    it("without a path is /", function()
      local origin = helpers.request(server, "GET", "/")
      local absolute = helpers.request(server, "GET", "http://shop.example")
      assert.equals(origin.status, absolute.status)
      assert.equals(origin.body, absolute.body)
      absolute = helpers.request(server, "GET", "http://shop.example?x=1")
      assert.equals(origin.status, absolute.status)
      assert.equals(origin.body, absolute.body)
    end)
  end)
end)
