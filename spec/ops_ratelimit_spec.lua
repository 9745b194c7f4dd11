-- The subscribe_rate_limit and trust_proxy options (contract section 2): a
-- token bucket per client address on the subscribe route only (capacity =
-- the per-minute limit, refilled continuously), 429 too_many_requests with
-- an integer Retry-After past it, and the client address taken from the
-- last X-Forwarded-For entry only behind a trusted proxy.
local helpers = require "spec.support.helpers"
local socket = require "socket"

local admin = helpers.admin

local SUBSCRIBE = "/restock-notifications/variants/sold"

local function plugin(opts)
  return "local restock = require \"restock\"\nrestock.options { "
    .. opts .. " }\n"
end

-- Starts a server with the options and a sold-out variant "sold".
local function start(opts)
  local server = helpers.start { plugin = plugin(opts) }
  helpers.assert_status(admin(server, "POST", "/admin/variants",
    { id = "sold", inventory_quantity = 0 }), 200)
  return server
end

local n = 0
-- One subscribe request (on conn if given, else a new connection), with
-- an X-Forwarded-For header if xff is given.
local function subscribe(server, xff, conn)
  n = n + 1
  local opts = { json = { email = "shopper" .. n .. "@example.com" },
    headers = {} }
  if xff then
    opts.headers["X-Forwarded-For"] = xff
  end
  if conn then
    return conn:request("POST", SUBSCRIBE, opts)
  end
  return helpers.request(server, "POST", SUBSCRIBE, opts)
end

-- Asserts a 429 answer and returns its Retry-After in seconds.
local function assert_limited(res, max_retry)
  helpers.assert_error(res, 429, "too_many_requests")
  local retry = res.headers["retry-after"]
  assert.truthy(retry and retry:match("^%d+$"),
    "Retry-After is not an integer number of seconds: " .. tostring(retry))
  retry = tonumber(retry)
  assert.truthy(retry >= 1, "Retry-After " .. retry)
  if max_retry then
    assert.truthy(retry <= max_retry, string.format(
      "Retry-After %d, at most %d expected", retry, max_retry))
  end
  return retry
end

describe("subscribe_rate_limit", function()
  after_each(helpers.cleanup)

  it("answers 429 with Retry-After past the limit", function()
    local server = start("subscribe_rate_limit = 3")
    for _ = 1, 3 do
      helpers.assert_status(subscribe(server), 201)
    end
    -- One token comes back every 20 s at 3 a minute.
    local retry = assert_limited(subscribe(server), 20)
    assert.truthy(retry >= 15, "Retry-After " .. retry
      .. " although the next token is about 20 s away")
    assert_limited(subscribe(server), 20)
    -- The limited requests were not stored.
    local list = admin(server, "GET", "/admin/restock-notifications")
    assert.equals(3, list.json.count)
  end)

  it("counts every subscribe request, also the failed ones", function()
    local server = start("subscribe_rate_limit = 2")
    helpers.assert_error(helpers.request(server, "POST",
      "/restock-notifications/variants/unknown",
      { json = { email = "a@example.com" } }), 404, "not_found")
    helpers.assert_error(helpers.request(server, "POST", SUBSCRIBE,
      { json = { email = "not-an-email" } }), 400, "invalid_data")
    assert_limited(subscribe(server), 60)
  end)

  it("limits only the subscribe route", function()
    local server = start("subscribe_rate_limit = 1")
    helpers.assert_status(subscribe(server), 201)
    assert_limited(subscribe(server))
    for _ = 1, 5 do
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
      helpers.assert_status(helpers.request(server, "GET", "/metrics"), 200)
      helpers.assert_status(admin(server, "GET", "/admin/variants/sold"), 200)
      helpers.assert_error(helpers.request(server, "GET",
        "/restock-notifications/unsubscribe?token=bogus"), 400)
      helpers.assert_error(helpers.request(server, "POST",
        "/restock-notifications/unsubscribe", { json = { token = "bogus" } }),
        400)
      local pre = helpers.request(server, "OPTIONS", SUBSCRIBE,
        { headers = { Origin = "https://shop.example.com" } })
      assert.are_not.equals(429, pre.status)
    end
    assert_limited(subscribe(server))
  end)

  it("keeps a bucket per client: other clients are unaffected", function()
    local server = start("subscribe_rate_limit = 2, trust_proxy = true")
    helpers.assert_status(subscribe(server, "198.51.100.7"), 201)
    helpers.assert_status(subscribe(server, "198.51.100.7"), 201)
    assert_limited(subscribe(server, "198.51.100.7"))
    -- Another address, and the peer itself without the header.
    helpers.assert_status(subscribe(server, "198.51.100.8"), 201)
    helpers.assert_status(subscribe(server, "2001:db8::1"), 201)
    helpers.assert_status(subscribe(server), 201)
    helpers.assert_status(subscribe(server), 201)
    assert_limited(subscribe(server))
    assert_limited(subscribe(server, "198.51.100.7"))
    helpers.assert_status(subscribe(server, "198.51.100.8"), 201)
  end)

  it("defaults to no limit", function()
    local server = start("")
    local conn = helpers.connect(server)
    for i = 1, 70 do
      local res = subscribe(server, nil, conn)
      assert.equals(201, res.status, "request " .. i .. ": "
        .. helpers.describe(res))
    end
  end)

  it("is off with a limit of 0", function()
    local server = start("subscribe_rate_limit = 0")
    local conn = helpers.connect(server)
    for i = 1, 70 do
      local res = subscribe(server, nil, conn)
      assert.equals(201, res.status, "request " .. i .. ": "
        .. helpers.describe(res))
    end
  end)

  it("gives a token back every second at 60 a minute", function()
    local server = start("subscribe_rate_limit = 60")
    local conn = helpers.connect(server)
    -- The bucket holds the whole minute's 60 at first.
    for i = 1, 60 do
      local res = subscribe(server, nil, conn)
      assert.equals(201, res.status, "request " .. i .. ": "
        .. helpers.describe(res))
    end
    local spent = socket.gettime()
    assert_limited(subscribe(server, nil, conn), 2)
    -- Poll (20 tries a second, each refused without spending anything)
    -- until the next token is there.
    local ok_at = helpers.wait_for(function()
      local res = subscribe(server, nil, conn)
      if res.status == 201 then
        return socket.gettime()
      end
      assert_limited(res, 2)
      socket.sleep(0.04)
    end, 3)
    assert(ok_at, "no token came back within 3 s")
    local waited = ok_at - spent
    assert.truthy(waited >= 0.5, string.format(
      "a token came back after only %.3f s", waited))
    -- Only one came back.
    assert_limited(subscribe(server, nil, conn), 2)
  end)
end)

describe("trust_proxy", function()
  after_each(helpers.cleanup)

  it("takes the client address from the last X-Forwarded-For entry",
    function()
      local server = start("subscribe_rate_limit = 2, trust_proxy = true")
      -- The proxy appends the real peer: the earlier entries are whatever
      -- the client sent and prove nothing.
      helpers.assert_status(subscribe(server, "10.0.0.1, 203.0.113.5"), 201)
      helpers.assert_status(subscribe(server, "10.0.0.2,203.0.113.5"), 201)
      assert_limited(subscribe(server, "203.0.113.5"))
      assert_limited(subscribe(server, "forged, 10.9.9.9, 203.0.113.5"))
      -- A client cannot escape its bucket by prepending addresses, but a
      -- different last entry is a different client.
      helpers.assert_status(subscribe(server, "203.0.113.5, 203.0.113.6"),
        201)
      -- The peer address (127.0.0.1) has a bucket of its own.
      helpers.assert_status(subscribe(server), 201)
    end)

  it("takes the last entry over several X-Forwarded-For header lines",
    function()
      -- A proxy that adds a header line of its own (HAProxy's forwardfor
      -- does) leaves the client's forged line first; the lines together
      -- are one list (RFC 9110, 5.3), whose last entry is the proxy's.
      local server = start("subscribe_rate_limit = 2, trust_proxy = true")
      local function raw_subscribe(forged)
        n = n + 1
        local body = string.format('{"email":"raw%d@example.com"}', n)
        local conn = helpers.connect(server)
        assert(conn:send_raw(table.concat({
          "POST " .. SUBSCRIBE .. " HTTP/1.1",
          "Host: localhost",
          "Content-Type: application/json",
          "Content-Length: " .. #body,
          "X-Forwarded-For: " .. forged,
          "X-Forwarded-For: 203.0.113.77",
          "Connection: close",
          "", body }, "\r\n")))
        local res = assert(conn:read_response())
        conn:close()
        return res
      end
      helpers.assert_status(raw_subscribe("10.1.1.1"), 201)
      helpers.assert_status(raw_subscribe("10.1.1.2"), 201)
      assert_limited(raw_subscribe("10.1.1.3"))
      assert_limited(subscribe(server, "203.0.113.77"))
    end)

  it("is off by default: X-Forwarded-For is ignored", function()
    local server = start("subscribe_rate_limit = 2")
    helpers.assert_status(subscribe(server, "198.51.100.1"), 201)
    helpers.assert_status(subscribe(server, "198.51.100.2"), 201)
    -- Every request came from 127.0.0.1, whatever the header says.
    assert_limited(subscribe(server, "198.51.100.3"))
    assert_limited(subscribe(server))
    assert_limited(subscribe(server, "198.51.100.1, 198.51.100.4"))
  end)

  it("is ignored with trust_proxy = false", function()
    local server = start("subscribe_rate_limit = 1, trust_proxy = false")
    helpers.assert_status(subscribe(server, "198.51.100.1"), 201)
    assert_limited(subscribe(server, "198.51.100.2"))
  end)
end)
