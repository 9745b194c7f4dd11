-- The rate limiter's table against a client with many addresses (issue
-- 13): filling it with distinct X-Forwarded-For addresses must not lock
-- new clients out (old buckets are evicted instead), and an IPv6 client is
-- counted by its /64, so rotating through it buys nothing.
local helpers = require "spec.support.helpers"

-- An unknown variant: every request that passes the limiter is a cheap 404
-- and writes nothing; one that does not is a 429.
local PATH = "/restock-notifications/variants/nope"
local BODY = '{"email":"shopper@example.com"}'

local function plugin(opts)
  return "local restock = require \"restock\"\nrestock.options { "
    .. opts .. " }\n"
end

local function request(xff)
  return table.concat({
    "POST " .. PATH .. " HTTP/1.1",
    "Host: localhost",
    "Content-Type: application/json",
    "Content-Length: " .. #BODY,
    "X-Forwarded-For: " .. xff,
    "", BODY }, "\r\n")
end

-- Reads `count` responses from a pipelined connection and returns how many
-- had each status. The buffer is consumed by position, not re-sliced per
-- response, so 65,000 answers take linear time.
local function read_statuses(conn, count)
  local statuses = {}
  local buf, pos = conn.buf, 1
  conn.buf = ""
  local got = 0
  while got < count do
    local head_end = buf:find("\r\n\r\n", pos, true)
    if head_end then
      local head = buf:sub(pos, head_end - 1)
      local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
      assert(status, "bad status line: " .. head:sub(1, 80))
      local len = tonumber(head:lower():match("\ncontent%-length: *(%d+)"))
      assert(len, "no Content-Length in: " .. head)
      if #buf >= head_end + 3 + len then
        statuses[status] = (statuses[status] or 0) + 1
        got = got + 1
        pos = head_end + 4 + len
        goto continue
      end
    end
    -- Not a whole response yet: keep the rest and read more.
    buf = buf:sub(pos)
    pos = 1
    conn.buf = ""
    local ok, err = conn:fill(10)
    assert(ok, string.format("after %d of %d responses: %s", got, count,
      tostring(err)))
    buf = buf .. conn.buf
    conn.buf = ""
    ::continue::
  end
  conn.buf = buf:sub(pos)
  return statuses
end

-- Sends one request per address of `addresses` on one keep-alive
-- connection, pipelined in batches (a batch's answers stay well below the
-- server's 1 MiB of unread output, so it never stops reading us), and
-- returns the count of each status.
local function flood(server, addresses)
  local conn = helpers.connect(server, 10)
  local totals = {}
  local batch = 2000
  for first = 1, #addresses, batch do
    local last = math.min(first + batch - 1, #addresses)
    local parts = {}
    for i = first, last do
      parts[#parts + 1] = request(addresses[i])
    end
    assert(conn:send_raw(table.concat(parts)))
    for status, n in pairs(read_statuses(conn, last - first + 1)) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  conn:close()
  return totals
end

local function one(server, xff)
  return helpers.request(server, "POST", PATH, {
    body = BODY,
    headers = { ["Content-Type"] = "application/json",
      ["X-Forwarded-For"] = xff },
  })
end

describe("the subscribe rate limiter's table", function()
  after_each(helpers.cleanup)

  it("lets a new client in after 65,600 distinct addresses filled it",
    function()
      -- 65,600 requests, each a write unit answered 404: on PostgreSQL that
      -- is 65,600 transactions for a table that lives in memory, before the
      -- database; the other two tests here run on both backends.
      if helpers.sqlite_only("the limiter's table is in memory, before the "
        .. "database") then return end
      local server = helpers.start {
        plugin = plugin("subscribe_rate_limit = 2, trust_proxy = true"),
        args = { "--log-level", "warn" },
      }
      -- 65,600 addresses of 198.18.0.0/15 (a range for benchmarks), each
      -- seen once: one more than the table holds.
      local addresses = {}
      for i = 0, 65599 do
        addresses[#addresses + 1] = string.format("198.%d.%d.%d",
          18 + (i >> 16), (i >> 8) & 255, i & 255)
      end
      local totals = flood(server, addresses)
      assert.same({ [404] = 65600 }, totals)

      -- A newcomer, and then more of them, still get through the limiter.
      helpers.assert_error(one(server, "203.0.113.10"), 404, "not_found")
      helpers.assert_error(one(server, "203.0.113.11"), 404, "not_found")
      -- Their buckets are counted as before.
      helpers.assert_error(one(server, "203.0.113.10"), 404, "not_found")
      local res = one(server, "203.0.113.10")
      helpers.assert_error(res, 429, "too_many_requests")
      -- The server answers the rest as always.
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
    end)

  it("counts an IPv6 client by its /64", function()
    local server = helpers.start {
      plugin = plugin("subscribe_rate_limit = 2, trust_proxy = true"),
    }
    helpers.assert_error(one(server, "2001:db8:1:2::1"), 404, "not_found")
    helpers.assert_error(one(server, "2001:db8:1:2::2"), 404, "not_found")
    -- Rotating through the /64 buys nothing.
    for i = 3, 40 do
      local res = one(server, string.format("2001:db8:1:2:%x::%x", i, i))
      helpers.assert_error(res, 429, "too_many_requests")
    end
    local res = one(server, "2001:db8:1:2:ffff:ffff:ffff:ffff")
    helpers.assert_error(res, 429, "too_many_requests")
    -- The next /64 is another client.
    helpers.assert_error(one(server, "2001:db8:1:3::1"), 404, "not_found")
    -- An IPv4-mapped address is its IPv4 address.
    helpers.assert_error(one(server, "192.0.2.5"), 404, "not_found")
    helpers.assert_error(one(server, "::ffff:192.0.2.5"), 404, "not_found")
    helpers.assert_error(one(server, "::ffff:192.0.2.5"), 429,
      "too_many_requests")
  end)

  it("does not let a rotating /64 fill the table either", function()
    local server = helpers.start {
      plugin = plugin("subscribe_rate_limit = 1, trust_proxy = true"),
      args = { "--log-level", "warn" },
    }
    local addresses = {}
    for i = 1, 3000 do
      addresses[#addresses + 1] = string.format("2001:db8:7:7:%x:%x::1",
        i >> 8, i & 255)
    end
    -- One token a minute for the whole /64: the first request only.
    assert.same({ [404] = 1, [429] = 2999 }, flood(server, addresses))
    helpers.assert_error(one(server, "2001:db8:7:8::1"), 404, "not_found")
  end)
end)
