-- restock.http.request (contract section 2): outbound HTTP(S) from Lua
-- handlers, on libcurl's multi interface inside the event loop. Each test's
-- plugin makes one request from a restock-notification.subscribed handler
-- and records the outcome (the response, or nil and the error) in a file;
-- a fake server (spec/support/fake_http.py) records what it received.
local socket = require "socket"
local helpers = require "spec.support.helpers"
local fake_http = require "spec.support.fake_http"
local outbound = require "spec.support.outbound"

local SUBSCRIBED = "restock-notification.subscribed"

-- A plugin whose subscribed handler calls restock.http.request(request)
-- and records {status=, headers=, body=} as "response" or {err=} as
-- "error". options go to restock.options (max_attempts 1 unless given).
local function request_plugin(record_path, request, options)
  options = options or {}
  if options.max_attempts == nil then
    options.max_attempts = 1
  end
  return helpers.recorder_plugin(record_path) .. string.format([[
restock.options(%s)
restock.subscribe(%q, function(data)
  local res, err = restock.http.request(%s)
  if res then
    record("response", { status = res.status, headers = res.headers,
      body = res.body })
  else
    record("error", { err = err, type = type(res) })
  end
end, { name = "http-test" })
]], outbound.literal(options), SUBSCRIBED, outbound.literal(request))
end

-- Starts a server with that plugin, fires the handler once by subscribing
-- to a sold-out variant and returns the server, the record path and the
-- time (socket.gettime) just before the subscribe request.
local function run_request(request, opts)
  opts = opts or {}
  local dir = helpers.tmpdir()
  local path = dir .. "/records.jsonl"
  local server = helpers.start {
    dir = dir,
    plugin = request_plugin(path, request, opts.options),
    env = opts.env,
  }
  outbound.sold_out(server, "v-http")
  local t0 = socket.gettime()
  outbound.subscribe(server, "v-http", "ann@example.com")
  return server, path, t0
end

-- Waits for the handler's one record and returns it ({tag=, data=}).
local function outcome(server, path, timeout)
  local recs = helpers.wait_records(path, nil, 1, timeout or 10)
  assert.truthy(recs, "the handler recorded nothing\n" .. server:stderr())
  return recs[1]
end

local function assert_response(rec)
  assert.equals("response", rec.tag, "expected a response, got "
    .. require("cjson").encode(rec.data))
  return rec.data
end

local function assert_error(rec)
  assert.equals("error", rec.tag, "expected nil, err, got "
    .. require("cjson").encode(rec.data))
  assert.equals("nil", rec.data.type)
  assert.equals("string", type(rec.data.err))
  return rec.data.err
end

describe("restock.http.request", function()
  after_each(function()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  describe("a plain HTTP request", function()
    it("is a GET by default and hands status, headers and body to Lua",
      function()
        local fake = fake_http.start { "--status", "200", "--body",
          '{"ok":true}', "--header", "X-Custom: hello there" }
        local server, path = run_request { url = fake.url .. "/ping?a=1" }
        local res = assert_response(outcome(server, path))
        assert.equals(200, res.status)
        assert.equals('{"ok":true}', res.body)
        -- Lower-case names.
        assert.equals("hello there", res.headers["x-custom"])
        assert.equals("application/json", res.headers["content-type"])
        assert.equals("11", res.headers["content-length"])
        assert.is_nil(res.headers["X-Custom"])

        local req = fake:wait_requests(1)[1]
        assert.equals("GET", req.method)
        assert.equals("/ping?a=1", req.path)
        assert.equals("", req.body)
      end)

    it("is a POST when a body is given, with its headers and body",
      function()
        local fake = fake_http.start { "--status", "201" }
        local body = '{"hello":"world","n":[1,2,3]}'
        local server, path = run_request {
          url = fake.url .. "/hook",
          headers = { ["X-Test"] = "abc 123",
            ["Content-Type"] = "application/json" },
          body = body,
        }
        local res = assert_response(outcome(server, path))
        assert.equals(201, res.status)
        assert.equals("", res.body)

        local req = fake:wait_requests(1)[1]
        assert.equals("POST", req.method)
        assert.equals("/hook", req.path)
        assert.equals("abc 123", req.headers["x-test"])
        assert.equals("application/json", req.headers["content-type"])
        assert.equals(body, req.body)
        assert.same({ hello = "world", n = { 1, 2, 3 } }, req.json)
      end)

    it("uses the method given", function()
      local fake = fake_http.start { "--status", "200" }
      local server, path = run_request { method = "PUT",
        url = fake.url .. "/thing/1", body = "new" }
      assert.equals(200, assert_response(outcome(server, path)).status)
      local req = fake:wait_requests(1)[1]
      assert.equals("PUT", req.method)
      assert.equals("new", req.body)
    end)

    it("returns an error status as a response, not as nil, err", function()
      local fake = fake_http.start { "--status", "404", "--body", "nope" }
      local server, path = run_request { url = fake.url .. "/missing" }
      local res = assert_response(outcome(server, path))
      assert.equals(404, res.status)
      assert.equals("nope", res.body)
    end)
  end)

  describe("failures", function()
    it("returns nil, err when the connection is refused", function()
      local port = fake_http.closed_port()
      local server, path = run_request {
        url = string.format("http://127.0.0.1:%d/", port) }
      local err = assert_error(outcome(server, path))
      assert.truthy(err:lower():find("refused", 1, true)
        or err:lower():find("connect", 1, true), "err: " .. err)
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
    end)

    it("returns nil, \"timed out after N ms\" when the answer is late",
      function()
        local fake = fake_http.start { "--delay", "2" }
        local server, path, t0 = run_request { url = fake.url .. "/slow",
          timeout = 300 }
        local err = assert_error(outcome(server, path))
        local elapsed = socket.gettime() - t0
        assert.truthy(err:find("timed out", 1, true), "err: " .. err)
        assert.truthy(err:find("300 ms", 1, true), "err: " .. err)
        assert.truthy(elapsed < 1.8, string.format(
          "the timeout took %.2f s to fire", elapsed))
        -- The request did reach the fake; the client gave up on it.
        assert.truthy(fake:wait_requests(1))
        local done = fake:wait_done(1, 3)
        assert.truthy(done and done[1].client_gone,
          "the client kept the connection open after its timeout")
      end)

    it("returns nil, err for a URL that is not http(s)", function()
      local server, path = run_request { url = "ftp://127.0.0.1/file" }
      assert_error(outcome(server, path))
    end)
  end)

  describe("called outside a handler", function()
    it("makes the plugin fail to load at the top level", function()
      local dir = helpers.tmpdir()
      local config = dir .. "/plugin.lua"
      local port = fake_http.closed_port()
      helpers.write_file(config, string.format([[
local restock = require "restock"
restock.http.request { url = "http://127.0.0.1:%d/" }
]], port))
      local db = dir .. "/restock.db"
      assert.equals(0, (helpers.run({ "migrations", "run", "--db", db })))
      local rc, _, stderr = helpers.run({ "start", "--db", db, "--config",
        config, "--port", "0" }, { RESTOCK_ADMIN_TOKEN = "t" },
        { timeout = 10 })
      assert.equals(2, rc)
      assert.truthy(stderr:find("handler", 1, true), stderr)

      rc, _, stderr = helpers.run({ "check", "--config", config })
      assert.equals(2, rc)
      assert.truthy(stderr:find("handler", 1, true), stderr)
    end)

    it("raises in a coroutine the handler creates", function()
      local dir = helpers.tmpdir()
      local path = dir .. "/records.jsonl"
      local port = fake_http.closed_port()
      local server = helpers.start { dir = dir,
        plugin = helpers.recorder_plugin(path) .. string.format([[
restock.subscribe(%q, function(data)
  local ok, err = coroutine.wrap(function()
    return pcall(restock.http.request,
      { url = "http://127.0.0.1:%d/" })
  end)()
  record("result", { ok = ok, err = tostring(err) })
end)
]], SUBSCRIBED, port) }
      outbound.sold_out(server, "v-co")
      outbound.subscribe(server, "v-co", "ann@example.com")
      local rec = outcome(server, path)
      assert.is_false(rec.data.ok)
      assert.truthy(rec.data.err:find("handler", 1, true), rec.data.err)
    end)
  end)

  describe("HTTPS", function()
    local cert, key, fake
    before_each(function()
      cert, key = fake_http.make_cert()
      fake = fake_http.start { "--tls", cert, key, "--status", "200",
        "--body", "secure hello" }
    end)

    it("verifies the server against RESTOCK_CA_FILE", function()
      assert.truthy(fake.url:find("^https://127%.0%.0%.1:"))
      local server, path = run_request({ url = fake.url .. "/tls" },
        { env = { RESTOCK_CA_FILE = cert } })
      local res = assert_response(outcome(server, path))
      assert.equals(200, res.status)
      assert.equals("secure hello", res.body)
      local req = fake:wait_requests(1)[1]
      assert.equals("/tls", req.path)
    end)

    it("refuses a certificate it does not trust", function()
      local server, path = run_request({ url = fake.url .. "/tls" })
      local err = assert_error(outcome(server, path))
      assert.truthy(err:lower():find("certificate", 1, true), "err: " .. err)
      assert.equals(0, #fake:requests())
    end)
  end)

  describe("in the event loop", function()
    it("waits in several handlers at once", function()
      local fake = fake_http.start { "--delay", "1", "--status", "200" }
      local dir = helpers.tmpdir()
      local path = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir,
        plugin = request_plugin(path, { url = fake.url .. "/slow" }) }
      outbound.sold_out(server, "v-many")
      for i = 1, 3 do
        outbound.subscribe(server, "v-many", "p" .. i .. "@example.com")
      end
      local reqs = fake:wait_requests(3, 10)
      assert.truthy(reqs, "the fake got " .. #fake:requests()
        .. " requests\n" .. server:stderr())
      -- All three arrived while the first answer was still held.
      assert.truthy(reqs[3].time - reqs[1].time < 0.8, string.format(
        "requests 1 and 3 arrived %.2f s apart", reqs[3].time - reqs[1].time))
      local recs = helpers.wait_records(path, "response", 3, 10)
      assert.truthy(recs, "not every handler got its answer")
      outbound.wait_events(server, SUBSCRIBED, "delivered", 3)
    end)

    it("cancels the request of a handler aborted by handler_timeout",
      function()
        local fake = fake_http.start { "--delay", "3" }
        local server, path, t0 = run_request(
          { url = fake.url .. "/hang", timeout = 10000 },
          { options = { handler_timeout = 500, max_attempts = 1 } })
        local events = outbound.wait_events(server, SUBSCRIBED, "dead", 1, 10)
        assert.truthy(socket.gettime() - t0 < 2.5,
          "the handler was not aborted before the fake answered")
        assert.equals(1, events[1].attempts)
        assert.truthy(tostring(events[1].last_error):find("timed out", 1,
          true), "last_error: " .. tostring(events[1].last_error))
        -- The request was under way and is dropped.
        assert.equals(1, #fake:requests())
        local done = fake:wait_done(1, 5)
        assert.truthy(done, "the fake never finished the request")
        assert.is_true(done[1].client_gone,
          "the connection stayed open: the request was not cancelled")
        -- The handler never resumed.
        assert.equals(0, #helpers.read_records(path))
        helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
        -- after_each requires exit code 0 and no sanitizer report.
      end)
  end)

  -- libcurl is loaded with dlopen by the first request (core/curl_dl.h):
  -- a server that never calls out does not map it and its ~30 libraries.
  describe("libcurl, loaded on first use", function()
    local function maps_libcurl(server)
      return helpers.read_file("/proc/" .. server.pid .. "/maps")
        :find("libcurl", 1, true) ~= nil
    end

    it("is not mapped at start, and is after the first request", function()
      local fake = fake_http.start { "--status", "200" }
      local dir = helpers.tmpdir()
      local path = dir .. "/records.jsonl"
      local server = helpers.start {
        dir = dir,
        plugin = request_plugin(path, { url = fake.url .. "/ping" }),
      }
      assert.is_false(maps_libcurl(server))
      outbound.sold_out(server, "v-http")
      outbound.subscribe(server, "v-http", "ann@example.com")
      assert.equals(200, assert_response(outcome(server, path)).status)
      assert.is_true(maps_libcurl(server))
    end)

    it("answers nil, err and logs why when libcurl cannot be loaded",
      function()
        -- A library named like libcurl that has none of its functions,
        -- found first through LD_LIBRARY_PATH.
        local dir = helpers.tmpdir()
        local src = dir .. "/empty.c"
        helpers.write_file(src, "int not_curl;\n")
        assert.is_true(os.execute(string.format(
          "cc -shared -fPIC -o %s/libcurl.so.4 %s", dir, src)))
        local server, path = run_request({ url = "http://127.0.0.1:9/" },
          { env = { LD_LIBRARY_PATH = dir } })
        local err = assert_error(outcome(server, path))
        assert.equals("libcurl could not be initialized", err)
        assert.truthy(server:stderr():find(
          "outbound HTTP is unavailable: libcurl.so.4 has no "
          .. "curl_global_init", 1, true), server:stderr())
        helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
      end)
  end)
end)
