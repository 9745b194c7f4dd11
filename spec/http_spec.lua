-- The HTTP layer: routing errors, /health, keep-alive and pipelining, limits
-- on bodies, headers, idle time and connections, and path decoding.
local helpers = require "spec.support.helpers"
local socket = require "socket"

local MiB = 1048576

-- Makes 1000 product-variant.updated events, so that GET
-- /admin/events?limit=1000 answers ~200 KB, then sends n such requests at
-- once on a new connection whose receive buffer is rcvbuf bytes. Returns
-- the answer every one of them must get, and the connection.
local function send_big_listings(server, n, rcvbuf)
  local variants, updates = {}, {}
  for i = 1, 1000 do
    variants[i] = { id = "big" .. i }
    updates[i] = { variant_id = "big" .. i, inventory_quantity = i }
  end
  helpers.assert_status(helpers.admin(server, "POST", "/admin/variants",
    { variants = variants }), 200)
  helpers.assert_status(helpers.admin(server, "POST",
    "/admin/inventory/batch", { updates = updates }), 200)
  local want = helpers.admin(server, "GET", "/admin/events?limit=1000")
  helpers.assert_status(want, 200)
  assert.equals(1000, #want.json.events)
  assert.truthy(#want.body > 100000, #want.body)

  local conn = helpers.connect(server, 30)
  assert.truthy(conn.sock:setoption("recv-buffer-size", rcvbuf))
  local one = helpers.build_request(server, "GET", "/admin/events?limit=1000",
    { headers = { Authorization = "Bearer " .. helpers.ADMIN_TOKEN } }, true)
  assert.truthy(conn:send_raw(string.rep(one, n)))
  return want, conn
end

-- How many GET /admin/events the server has answered, from /metrics.
local function listings_answered(server)
  local res = helpers.request(server, "GET", "/metrics")
  return tonumber(res.body:match(
    'restockd_http_requests_total{route="/admin/events",status="200"} (%d+)'))
    or 0
end

-- The process_open_fds gauge of /metrics.
local function open_fds(server)
  local res = helpers.request(server, "GET", "/metrics")
  return tonumber(res.body:match("\nprocess_open_fds (%d+)"))
end

describe("http", function()
  after_each(helpers.cleanup)

  describe("routing", function()
    local server
    before_each(function()
      server = helpers.start()
    end)

    it("answers GET /health with status ok", function()
      local res = helpers.request(server, "GET", "/health")
      helpers.assert_status(res, 200)
      assert.same({ status = "ok" }, res.json)
      assert.truthy((res.headers["content-type"] or "")
        :find("application/json", 1, true))
    end)

    it("answers an unknown route with 404 not_found", function()
      local res = helpers.request(server, "GET", "/no/such/route")
      helpers.assert_error(res, 404, "not_found")
    end)

    it("answers a POST to an unknown route with 404 not_found", function()
      local res = helpers.request(server, "POST", "/nothing-here",
        { json = { a = 1 } })
      helpers.assert_error(res, 404, "not_found")
    end)

    it("answers a known path with the wrong method with 405 and Allow",
      function()
        local res = helpers.request(server, "DELETE", "/health")
        helpers.assert_error(res, 405, "not_allowed")
        local allow = res.headers["allow"]
        assert.truthy(allow, "expected an Allow header")
        assert.truthy(allow:find("GET", 1, true), allow)
        assert.is_nil(allow:find("DELETE", 1, true))
      end)

    it("answers a wrong method on a store route with 405", function()
      local res = helpers.request(server, "GET",
        "/restock-notifications/variants/v1")
      helpers.assert_error(res, 405, "not_allowed")
      assert.truthy((res.headers["allow"] or ""):find("POST", 1, true))
    end)

    it("ignores the query string when routing", function()
      local res = helpers.request(server, "GET", "/health?probe=1")
      helpers.assert_status(res, 200)
      assert.same({ status = "ok" }, res.json)
    end)
  end)

  describe("keep-alive", function()
    local server
    before_each(function()
      server = helpers.start()
    end)

    it("serves several requests on one connection", function()
      local conn = helpers.connect(server)
      for _ = 1, 5 do
        local res = conn:request("GET", "/health")
        helpers.assert_status(res, 200)
        assert.same({ status = "ok" }, res.json)
      end
      local res = conn:request("GET", "/nope")
      helpers.assert_error(res, 404, "not_found")
      res = conn:request("GET", "/health")
      helpers.assert_status(res, 200)
      assert.is_false(conn:closed(0.1))
    end)

    it("answers pipelined requests in order", function()
      local conn = helpers.connect(server)
      local bytes = helpers.build_request(server, "GET", "/health", nil, true)
        .. helpers.build_request(server, "GET", "/not-a-route", nil, true)
        .. helpers.build_request(server, "GET", "/health", nil, true)
      assert.truthy(conn:send_raw(bytes))
      local statuses = {}
      for i = 1, 3 do
        local res, err = conn:read_response()
        assert.truthy(res, "response " .. i .. ": " .. tostring(err))
        statuses[i] = res.status
      end
      assert.same({ 200, 404, 200 }, statuses)
      assert.equals(200, conn:request("GET", "/health").status)
    end)

    it("answers large pipelined responses whole and in order to a client "
      .. "slow to read", function()
      -- 1000 product-variant.updated events make each listing ~150 KB, and
      -- 60 of them, sent at once to a client with a small receive buffer
      -- that leaves them unread for a while, overflow the socket buffers
      -- (4 MiB at most to send): the server must queue what the kernel does
      -- not take, stop reading, and resume.
      local want, conn = send_big_listings(server, 60, 65536)
      socket.sleep(0.3) -- not reading: the server's writes back up
      for i = 1, 60 do
        local res, err = conn:read_response()
        assert.truthy(res, "response " .. i .. ": " .. tostring(err))
        assert.equals(200, res.status)
        assert.equals(want.body, res.body, "response " .. i .. " differs")
      end
      assert.equals(200, conn:request("GET", "/health").status)
    end)

    it("stops parsing pipelined requests while their answers wait, and "
      .. "goes on once they are read", function()
      -- 300 requests of ~100 bytes for ~200 KB answers each: without
      -- back-pressure one read would have the server build 60 MB for a
      -- client that reads nothing.
      local want, conn = send_big_listings(server, 300, 65536)
      local before = 1 -- send_big_listings made one listing itself
      assert.truthy(helpers.wait_for(function()
        return listings_answered(server) > before
      end, 10), "no answer at all")
      -- Watched for a second: it stops far short of 300 (the socket
      -- buffers take some 20 answers, the server 1 MiB more).
      local deadline = socket.gettime() + 1
      while socket.gettime() < deadline do
        local n = listings_answered(server) - before
        assert.truthy(n < 100, n .. " answers built for a client reading none")
        socket.sleep(0.05)
      end
      for i = 1, 300 do
        local res, err = conn:read_response()
        assert.truthy(res, "response " .. i .. ": " .. tostring(err))
        assert.equals(200, res.status)
        assert.equals(want.body, res.body, "response " .. i .. " differs")
      end
      assert.equals(300, listings_answered(server) - before)
      assert.equals(200, conn:request("GET", "/health").status)
    end)

    it("closes the connection after answering Connection: close", function()
      local conn = helpers.connect(server)
      assert.truthy(conn:send_raw(helpers.build_request(server, "GET",
        "/health", nil, false)))
      local res = assert(conn:read_response())
      assert.equals(200, res.status)
      assert.is_true(conn:closed(2))
    end)
  end)

  describe("limits", function()
    local server
    before_each(function()
      server = helpers.start()
    end)

    -- Sends a body larger than the limit for as long as the server reads
    -- it, and returns the response the server sends meanwhile.
    local function send_oversized(conn, total)
      local head = table.concat({
        "POST /admin/variants HTTP/1.1",
        "Host: 127.0.0.1",
        "Authorization: Bearer " .. helpers.ADMIN_TOKEN,
        "Content-Type: application/json",
        "Content-Length: " .. total,
        "", "" }, "\r\n")
      assert.truthy(conn:send_raw(head))
      local chunk = string.rep("x", 65536)
      local sent = 0
      local deadline = socket.gettime() + 10
      while sent < total and socket.gettime() < deadline do
        -- Stop writing as soon as the server has answered.
        local readable = socket.select({ conn.sock }, nil, 0)
        if #readable > 0 then
          break
        end
        conn.sock:settimeout(0.05)
        local n = math.min(#chunk, total - sent)
        local last, err, partial = conn.sock:send(chunk, 1, n)
        last = last or partial or 0
        sent = sent + last
        if err and err ~= "timeout" then
          break
        end
      end
      return conn:read_response()
    end

    it("answers a body over 1 MiB with 413 and closes", function()
      local conn = helpers.connect(server)
      local res, err = send_oversized(conn, 2000000)
      assert.truthy(res, "expected a 413 response, got " .. tostring(err))
      helpers.assert_error(res, 413, "payload_too_large")
      assert.is_true(conn:closed(2))
      assert.equals(200, helpers.request(server, "GET", "/health").status)
    end)

    it("accepts a body of exactly 1 MiB", function()
      local prefix = '{"id":"big","title":"'
      local suffix = '"}'
      local body = prefix .. string.rep("t", MiB - #prefix - #suffix)
        .. suffix
      assert.equals(MiB, #body)
      local res = helpers.admin(server, "POST", "/admin/variants", body)
      assert.are_not.equal(413, res.status)
      assert.equals(200, helpers.request(server, "GET", "/health").status)
    end)

    it("answers garbage with 400 JSON and closes", function()
      local conn = helpers.connect(server)
      assert.truthy(conn:send_raw("\0\1\2 GARBAGE\r\n\r\n"))
      local res, err = conn:read_response()
      assert.truthy(res, "expected a 400 response, got " .. tostring(err))
      helpers.assert_error(res, 400)
      assert.is_true(conn:closed(2))
      assert.equals(200, helpers.request(server, "GET", "/health").status)
    end)

    it("answers a header block over 16 KiB with 431 and closes", function()
      local conn = helpers.connect(server)
      assert.truthy(conn:send_raw(helpers.build_request(server, "GET",
        "/health", { headers = { ["X-Big"] = string.rep("a", 20480) } },
        true)))
      local res, err = conn:read_response()
      assert.truthy(res, "expected a 431 response, got " .. tostring(err))
      helpers.assert_error(res, 431)
      assert.is_true(conn:closed(2))
      assert.equals(200, helpers.request(server, "GET", "/health").status)
    end)

    it("accepts a header block of 8 KiB", function()
      local res = helpers.request(server, "GET", "/health",
        { headers = { ["X-Big"] = string.rep("a", 8192) } })
      helpers.assert_status(res, 200)
    end)

    it("answers more than 100 headers with 431 and closes", function()
      local headers = {}
      for i = 1, 120 do
        headers["X-Header-" .. i] = "v"
      end
      local conn = helpers.connect(server)
      assert.truthy(conn:send_raw(helpers.build_request(server, "GET",
        "/health", { headers = headers }, true)))
      local res, err = conn:read_response()
      assert.truthy(res, "expected a 431 response, got " .. tostring(err))
      helpers.assert_error(res, 431)
      assert.is_true(conn:closed(2))
      assert.equals(200, helpers.request(server, "GET", "/health").status)
    end)

    it("accepts 90 headers", function()
      local headers = {}
      for i = 1, 88 do
        headers["X-Header-" .. i] = "v"
      end
      local res = helpers.request(server, "GET", "/health",
        { headers = headers })
      helpers.assert_status(res, 200)
    end)
  end)

  describe("idle timeout", function()
    it("closes a silent connection after RESTOCK_IDLE_TIMEOUT ms", function()
      local server = helpers.start({ env = { RESTOCK_IDLE_TIMEOUT = "300" } })
      local conn = helpers.connect(server)
      local started = socket.gettime()
      assert.is_true(conn:closed(3))
      local elapsed = socket.gettime() - started
      assert.truthy(elapsed < 2.5, "closed only after " .. elapsed .. " s")
      assert.equals(200, helpers.request(server, "GET", "/health").status)
    end)

    it("closes a keep-alive connection idle after a request", function()
      local server = helpers.start({ env = { RESTOCK_IDLE_TIMEOUT = "300" } })
      local conn = helpers.connect(server)
      assert.equals(200, conn:request("GET", "/health").status)
      assert.is_true(conn:closed(3))
    end)

    it("keeps a connection open while its client slowly reads a large "
      .. "answer", function()
      local server = helpers.start({ env = { RESTOCK_IDLE_TIMEOUT = "300" } })
      -- 8 MB: half of it waits in the server, past what the kernel holds.
      local want, conn = send_big_listings(server, 40, 65536)
      -- About 2 s in all, several idle periods, but never one without
      -- progress.
      for i = 1, 40 do
        local res, err = conn:read_response()
        assert.truthy(res, "response " .. i .. ": " .. tostring(err))
        assert.equals(want.body, res.body)
        socket.sleep(0.05)
      end
    end)

    it("closes a connection whose client stops reading a large answer",
      function()
        local server = helpers.start({
          env = { RESTOCK_IDLE_TIMEOUT = "300" } })
        local _, conn = send_big_listings(server, 60, 65536)
        local with_it = open_fds(server)
        -- Not reading: the server's queue stops moving, and one idle
        -- period later the connection goes.
        assert.truthy(helpers.wait_for(function()
          return open_fds(server) < with_it
        end, 5), "the stalled connection is still open")
        local got = 0
        while conn:read_response() do
          got = got + 1
        end
        assert.truthy(got < 60, "all 60 answers arrived")
      end)

    it("keeps a silent connection open by default", function()
      local server = helpers.start()
      local conn = helpers.connect(server)
      assert.is_false(conn:closed(0.7))
      assert.equals(200, conn:request("GET", "/health").status)
    end)
  end)

  describe("connection cap", function()
    it("over RESTOCK_MAX_CONNECTIONS, closes the connection idle longest "
      .. "to admit a new one", function()
      local server = helpers.start({
        env = { RESTOCK_MAX_CONNECTIONS = "5" } })
      local conns = {}
      for i = 1, 5 do
        conns[i] = helpers.connect(server)
        assert.equals(200, conns[i]:request("GET", "/health").status)
      end

      -- The sixth connection is served; the first, idle longest, gives way
      -- (spec/http_hardening_spec.lua has the 503 for a table of busy ones).
      local extra = helpers.connect(server, 3)
      assert.equals(200, extra:request("GET", "/health").status)
      assert.is_true(conns[1]:closed(2), "the first connection is open")

      -- The other four still work.
      for i = 2, 5 do
        assert.equals(200, conns[i]:request("GET", "/health").status)
      end
    end)
  end)

  describe("concurrency", function()
    it("serves 200 concurrent keep-alive connections, twice", function()
      local server = helpers.start()
      local conns = {}
      for i = 1, 200 do
        conns[i] = helpers.connect(server)
      end
      for round = 1, 2 do
        for i = 1, 200 do
          assert.truthy(conns[i]:send_request("GET", "/health"),
            "round " .. round .. ": send on connection " .. i)
        end
        for i = 1, 200 do
          local res, err = conns[i]:read_response()
          assert.truthy(res, string.format("round %d: connection %d: %s",
            round, i, tostring(err)))
          assert.equals(200, res.status)
          assert.same({ status = "ok" }, res.json)
        end
      end
    end)
  end)

  describe("path parameters", function()
    it("are percent-decoded", function()
      local server = helpers.start()
      local res = helpers.admin(server, "POST", "/admin/variants",
        { id = "var 1", inventory_quantity = 0 })
      helpers.assert_status(res, 200)
      res = helpers.admin(server, "GET", "/admin/variants/var%201")
      helpers.assert_status(res, 200)
      assert.equals("var 1", res.json.variant.id)
      res = helpers.admin(server, "GET", "/admin/variants/var%2F1")
      helpers.assert_error(res, 404, "not_found",
        "Variant with id: var/1 was not found")
    end)
  end)
end)
