-- The HTTP layer against hostile clients (issue 13, "The HTTP layer"):
-- Upgrade and CONNECT requests are answered once and nothing after them is
-- read; absolute-form targets are routed by their path.
local helpers = require "spec.support.helpers"

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
