-- The log settings of `restockd start`: --log-format text|json
-- (RESTOCK_LOG_FORMAT), --log-level debug|info|warn|error
-- (RESTOCK_LOG_LEVEL) and --access-log on|off (RESTOCK_ACCESS_LOG). Every
-- stderr line is one entry: in JSON an object with time, level and msg (and
-- method, route, path, status, duration_ms and client for access lines); in
-- text an ISO timestamp, a level and the message. Bad values exit 2.
local helpers = require "spec.support.helpers"
local cjson = require "cjson"

local admin = helpers.admin

local LEVELS = { debug = true, info = true, warn = true, error = true }
local TEXT_LEVELS = { DEBUG = true, INFO = true, WARN = true, ERROR = true }
local ISO = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d"

-- A message with everything that could break a line or a JSON string.
local TRICKY = 'say "hi" \\ back\nsecond line\n\tindented\ttab \1\31 end é ☃'

-- A plugin that logs at every level, and a handler that fails with a
-- multi-line traceback, so that every kind of line shows up.
local PLUGIN = string.format([[
local restock = require "restock"
restock.log.info("%%s", %q)
restock.log.info("plain info at load")
restock.log.warn("a warning at load")
restock.log.error("an error at load")
restock.subscribe("restock-notification.subscribed", function(data)
  error("handler blew up\nwith a second line")
end, { name = "exploder", max_attempts = 1 })
]], TRICKY)

-- Some traffic: 200, 404 (a pattern and unmatched), 201 and a dead
-- delivery (an ERROR line with a traceback).
local function traffic(server)
  helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
  helpers.assert_status(admin(server, "GET", "/admin/variants/ghost-1"), 404)
  helpers.assert_status(helpers.request(server, "GET", "/nowhere/at/all"),
    404)
  helpers.assert_status(admin(server, "POST", "/admin/variants",
    { id = "v", inventory_quantity = 0 }), 200)
  helpers.assert_status(helpers.request(server, "POST",
    "/restock-notifications/variants/v",
    { json = { email = "ann@example.com" } }), 201)
end

-- Stops the server (SIGTERM, exit 0 required) and returns its stderr, every
-- line of it written by then.
local function stop_and_read(server)
  assert.equals(0, server:stop())
  return server:stderr()
end

local function lines_of(text)
  local out = {}
  for line in text:gmatch("([^\n]*)\n") do
    out[#out + 1] = line
  end
  assert.equals("", (text:gsub("[^\n]*\n", "")),
    "the stderr does not end with a complete line")
  return out
end

-- Decodes every line as a JSON log entry, asserting the common fields.
local function json_entries(stderr)
  local out = {}
  for i, line in ipairs(lines_of(stderr)) do
    local ok, e = pcall(cjson.decode, line)
    assert(ok and type(e) == "table", string.format(
      "stderr line %d is not a JSON object: %s\n(%s)", i, line:sub(1, 300),
      tostring(e)))
    assert.equals("string", type(e.time), "no time in " .. line)
    assert.truthy(e.time:match(ISO), "time is not ISO 8601: " .. line)
    assert.truthy(LEVELS[e.level], "bad level in " .. line)
    assert.equals("string", type(e.msg), "no msg in " .. line)
    out[#out + 1] = e
  end
  return out
end

local function access_entries(entries)
  local out = {}
  for _, e in ipairs(entries) do
    if e.method ~= nil then
      out[#out + 1] = e
    end
  end
  return out
end

local function find_access(entries, method, path)
  for _, e in ipairs(entries) do
    if e.method == method and e.path == path then
      return e
    end
  end
  return nil
end

local function has_msg(entries, pred)
  for _, e in ipairs(entries) do
    if pred(e) then
      return e
    end
  end
  return nil
end

-- Checks a JSON run: every line an entry, the access lines complete.
local function check_json_run(stderr)
  local entries = json_entries(stderr)
  local access = access_entries(entries)
  for _, e in ipairs(access) do
    assert.equals("info", e.level)
    assert.equals("string", type(e.method))
    assert.equals("string", type(e.route))
    assert.equals("string", type(e.path))
    assert.equals("number", type(e.status))
    assert.equals("number", type(e.duration_ms))
    assert.truthy(e.duration_ms >= 0 and e.duration_ms < 10000)
    assert.equals("127.0.0.1", e.client)
  end
  local h = find_access(access, "GET", "/health")
  assert(h, "no access entry for GET /health in\n" .. stderr)
  assert.equals("/health", h.route)
  assert.equals(200, h.status)
  local g = find_access(access, "GET", "/admin/variants/ghost-1")
  assert(g, "no access entry for GET /admin/variants/ghost-1")
  assert.equals("/admin/variants/{id}", g.route)
  assert.equals(404, g.status)
  local u = find_access(access, "GET", "/nowhere/at/all")
  assert(u, "no access entry for the unknown route")
  assert.equals(404, u.status)
  assert.equals("unmatched", u.route)
  local s = find_access(access, "POST", "/restock-notifications/variants/v")
  assert(s, "no access entry for the subscribe")
  assert.equals("/restock-notifications/variants/{variant_id}", s.route)
  assert.equals(201, s.status)
  return entries
end

describe("logs", function()
  after_each(helpers.cleanup)

  describe("--log-format json", function()
    it("writes every stderr line as a JSON object", function()
      local server = helpers.start { plugin = PLUGIN,
        args = { "--log-format", "json" } }
      traffic(server)
      assert(helpers.wait_stderr(server, "is dead after", 5),
        "the failing handler's delivery did not die")
      local entries = check_json_run(stop_and_read(server))
      -- The plugin's message comes back exactly, escapes and all.
      assert(has_msg(entries, function(e)
        return e.msg == TRICKY and e.level == "info"
      end), "the tricky message did not survive the JSON encoding")
      assert(has_msg(entries, function(e)
        return e.msg == "a warning at load" and e.level == "warn"
      end), "no warn entry")
      assert(has_msg(entries, function(e)
        return e.msg == "an error at load" and e.level == "error"
      end), "no error entry")
      -- The dead delivery, traceback included, is one entry.
      assert(has_msg(entries, function(e)
        return e.level == "error" and e.msg:find("handler blew up", 1, true)
          and e.msg:find("with a second line", 1, true)
      end), "the handler's error is not one entry")
      assert(has_msg(entries, function(e)
        return e.msg:find("listening on http://", 1, true)
      end), "no listening entry")
    end)

    it("is also chosen with RESTOCK_LOG_FORMAT=json", function()
      local server = helpers.start { plugin = PLUGIN,
        env = { RESTOCK_LOG_FORMAT = "json" } }
      traffic(server)
      check_json_run(stop_and_read(server))
    end)

    it("lets the flag beat the environment", function()
      local server = helpers.start { plugin = PLUGIN,
        env = { RESTOCK_LOG_FORMAT = "json" },
        args = { "--log-format", "text" } }
      traffic(server)
      local stderr = stop_and_read(server)
      for _, line in ipairs(lines_of(stderr)) do
        assert.truthy(line:match(ISO), "not a text line: " .. line)
      end
    end)

    it("keeps a very long message one valid JSON line", function()
      -- Escaping can make a message several times longer; a cut line must
      -- still be a whole JSON object.
      local server = helpers.start { args = { "--log-format", "json" },
        plugin = [[
local restock = require "restock"
restock.log.info("%s", string.rep('"', 3000))
restock.log.warn("%s", string.rep("\1", 3000))
restock.log.error("%s", string.rep("x", 100000))
]] }
      local stderr = stop_and_read(server)
      local entries = json_entries(stderr)
      local quotes = has_msg(entries, function(e)
        return e.level == "info" and e.msg:match('^"+')
      end)
      assert(quotes, "the long message is missing")
      assert.truthy(#quotes.msg >= 1000, "the long message was cut to "
        .. #quotes.msg .. " characters")
      assert(has_msg(entries, function(e)
        return e.level == "warn" and e.msg:sub(1, 1) == "\1"
      end), "the long control-character message is missing")
      assert(has_msg(entries, function(e)
        return e.level == "error" and e.msg:match("^xxxx")
      end), "the very long message is missing")
    end)
  end)

  describe("--log-format json, odd input", function()
    it("keeps lines valid JSON when a message is not UTF-8", function()
      local server = helpers.start { args = { "--log-format", "json" },
        plugin = [[
local restock = require "restock"
restock.log.info("bad %s bytes, good %s", "\255\192\175", "caf\195\169")
]] }
      local entries = json_entries(stop_and_read(server))
      local e = has_msg(entries, function(x) return x.msg:match("^bad ") end)
      assert(e, "the message is missing")
      -- Each byte that is not UTF-8 is U+FFFD; good UTF-8 is kept.
      assert.equals("bad \239\191\189\239\191\189\239\191\189 bytes, good caf\195\169",
        e.msg)
    end)

    it("writes why start cannot go on as JSON too", function()
      local dir = helpers.tmpdir()
      local config = dir .. "/plugin.lua"
      helpers.write_file(config, 'require "restock".options {}\n')
      local rc, _, stderr = helpers.run({ "start", "--db", dir .. "/new.db",
        "--config", config, "--port", "0", "--log-format", "json" }, nil,
        { timeout = 10 })
      assert.equals(2, rc)
      local entries = json_entries(stderr)
      assert(has_msg(entries, function(x)
        return x.level == "error"
          and x.msg:find("restockd migrations run", 1, true)
      end), stderr)
    end)

    -- RESTOCK_LOG_FORMAT is read by every command, so the migrations that
    -- a unit file runs before start log as start does.
    it("writes why migrations or check cannot go on as JSON too", function()
      local dir = helpers.tmpdir()
      local env = { RESTOCK_LOG_FORMAT = "json" }
      local rc, _, stderr = helpers.run({ "migrations", "run", "--db",
        dir .. "/no/such/dir/x.db" }, env, { timeout = 10 })
      assert.equals(1, rc)
      local entries = json_entries(stderr)
      assert(has_msg(entries, function(x)
        return x.level == "error"
          and x.msg:find("cannot open database", 1, true)
      end), stderr)

      local config = dir .. "/broken.lua"
      helpers.write_file(config, "error(\n")
      rc, _, stderr = helpers.run({ "check", "--config", config }, env,
        { timeout = 10 })
      assert.equals(2, rc)
      entries = json_entries(stderr)
      assert(has_msg(entries, function(x)
        return x.level == "error" and x.msg:find("cannot load", 1, true)
          and x.msg:find("broken.lua", 1, true)
      end), stderr)
    end)
  end)

  describe("text format", function()
    it("starts each line with an ISO timestamp and a level", function()
      local server = helpers.start { plugin = PLUGIN }
      traffic(server)
      assert(helpers.wait_stderr(server, "is dead after", 5),
        "the failing handler's delivery did not die")
      local stderr = stop_and_read(server)
      local levels = {}
      for _, line in ipairs(lines_of(stderr)) do
        local level = line:match(ISO .. "%S*%s+(%u+)%s")
        assert.truthy(level and TEXT_LEVELS[level],
          "a line without a timestamp and a level: " .. line)
        levels[level] = true
      end
      assert.truthy(levels.INFO and levels.WARN and levels.ERROR)
      -- Line breaks inside a message do not start new lines.
      assert.truthy(stderr:find("say \"hi\"", 1, true))
      assert.truthy(stderr:match("say \"hi\"[^\n]*second line[^\n]*end"),
        "the multi-line message was split:\n" .. stderr)
      assert.truthy(stderr:match("handler blew up[^\n]*with a second line"),
        "the handler's error was split:\n" .. stderr)
    end)

    it("writes access lines: method, route, status, duration, client",
      function()
        local server = helpers.start()
        traffic(server)
        local stderr = stop_and_read(server)
        local function access(method, route, status)
          local pat = ISO .. "%S*%s+INFO%s+access " .. method:gsub("%p", "%%%0")
            .. " " .. route:gsub("%p", "%%%0") .. " " .. status
            .. " (%d+%.?%d*)ms 127%.0%.0%.1$"
          for _, line in ipairs(lines_of(stderr)) do
            local ms = line:match(pat)
            if ms then
              return tonumber(ms)
            end
          end
          error("no access line for " .. method .. " " .. route .. " "
            .. status .. " in\n" .. stderr)
        end
        assert.truthy(access("GET", "/health", 200) >= 0)
        access("GET", "/admin/variants/{id}", 404)
        access("GET", "unmatched", 404)
        access("POST", "/admin/variants", 200)
        access("POST", "/restock-notifications/variants/{variant_id}", 201)
        -- The raw path of a pattern route is not in a text access line.
        assert.falsy(stderr:find("access GET /admin/variants/ghost-1", 1,
          true))
      end)
  end)

  describe("access lines", function()
    local function count_access(stderr)
      local n = 0
      for _, line in ipairs(lines_of(stderr)) do
        if line:find(" access ", 1, true) then
          n = n + 1
        end
      end
      return n
    end

    it("appear at the default level", function()
      local server = helpers.start()
      traffic(server)
      assert.equals(5, count_access(stop_and_read(server)))
    end)

    it("appear at --log-level debug", function()
      local server = helpers.start { args = { "--log-level", "debug" } }
      traffic(server)
      assert.equals(5, count_access(stop_and_read(server)))
    end)

    for _, how in ipairs({ "flag", "env" }) do
      it("disappear with " .. (how == "flag" and "--access-log off"
          or "RESTOCK_ACCESS_LOG=off") .. ", other INFO lines stay",
        function()
          local opts = { plugin = PLUGIN }
          if how == "flag" then
            opts.args = { "--access-log", "off" }
          else
            opts.env = { RESTOCK_ACCESS_LOG = "off" }
          end
          local server = helpers.start(opts)
          traffic(server)
          local stderr = stop_and_read(server)
          assert.equals(0, count_access(stderr), stderr)
          assert.truthy(stderr:find("INFO", 1, true))
          assert.truthy(stderr:find("plain info at load", 1, true))
          assert.truthy(stderr:find("listening on", 1, true))
        end)

      it("disappear with " .. (how == "flag" and "--log-level warn"
          or "RESTOCK_LOG_LEVEL=warn") .. ", with every INFO line",
        function()
          local opts = { plugin = PLUGIN }
          if how == "flag" then
            opts.args = { "--log-level", "warn" }
          else
            opts.env = { RESTOCK_LOG_LEVEL = "warn" }
          end
          local server = helpers.start(opts)
          traffic(server)
          assert(helpers.wait_stderr(server, "is dead after", 5),
            "the failing handler's ERROR line is missing")
          local stderr = stop_and_read(server)
          assert.equals(0, count_access(stderr), stderr)
          for _, line in ipairs(lines_of(stderr)) do
            local level = line:match(ISO .. "%S*%s+(%u+)%s")
            assert.truthy(level == "WARN" or level == "ERROR",
              "a line below warn: " .. line)
          end
          assert.truthy(stderr:find("a warning at load", 1, true))
          assert.truthy(stderr:find("an error at load", 1, true))
        end)
    end

    it("and warnings disappear at --log-level error", function()
      local server = helpers.start { plugin = PLUGIN,
        args = { "--log-level", "error", "--log-format", "json" } }
      traffic(server)
      assert(helpers.wait_stderr(server, "is dead after", 5))
      local entries = json_entries(stop_and_read(server))
      assert.truthy(#entries >= 2)
      for _, e in ipairs(entries) do
        assert.equals("error", e.level, "a line below error: " .. e.msg)
      end
    end)

    it("can be turned off in JSON too", function()
      local server = helpers.start { args = { "--log-format=json",
        "--access-log=off" } }
      traffic(server)
      local entries = json_entries(stop_and_read(server))
      assert.equals(0, #access_entries(entries))
      assert.truthy(#entries >= 1)
    end)
  end)

  describe("bad settings", function()
    local dir, db, config
    before_each(function()
      dir = helpers.tmpdir()
      db = dir .. "/restock.db"
      config = dir .. "/plugin.lua"
      helpers.write_file(config, 'require("restock").options {}\n')
      -- Migrated, so that only the bad setting can make start exit 2.
      local rc = helpers.run({ "migrations", "run", "--db", db })
      assert.equals(0, rc)
    end)

    local function start_rc(args, env, timeout)
      local full = { "start", "--db", db, "--config", config, "--port", "0" }
      for _, a in ipairs(args) do
        full[#full + 1] = a
      end
      local e = { RESTOCK_ADMIN_TOKEN = helpers.ADMIN_TOKEN }
      for k, v in pairs(env or {}) do
        e[k] = v
      end
      return helpers.run(full, e, { timeout = timeout or 4 })
    end

    local cases = {
      { "--log-format xml", { "--log-format", "xml" }, nil, "xml" },
      { "--log-format JSON", { "--log-format", "JSON" }, nil, "JSON" },
      { "--log-level loud", { "--log-level", "loud" }, nil, "loud" },
      { "--access-log maybe", { "--access-log", "maybe" }, nil, "maybe" },
      { "RESTOCK_LOG_FORMAT=xml", {}, { RESTOCK_LOG_FORMAT = "xml" }, "xml" },
      { "RESTOCK_LOG_LEVEL=loud", {}, { RESTOCK_LOG_LEVEL = "loud" }, "loud" },
      { "RESTOCK_ACCESS_LOG=maybe", {}, { RESTOCK_ACCESS_LOG = "maybe" },
        "maybe" },
      { "--log-format without a value", { "--log-format" }, nil, nil },
    }
    for _, c in ipairs(cases) do
      it("exits 2 for " .. c[1], function()
        local rc, stdout, stderr = start_rc(c[2], c[3])
        assert.equals(2, rc, "exit code for " .. c[1] .. "; stderr:\n"
          .. stderr)
        assert.falsy(stdout:find("listening", 1, true))
        if c[4] then
          assert.truthy(stderr:find(c[4], 1, true),
            "the message does not name " .. c[4] .. ":\n" .. stderr)
        end
      end)
    end

    it("exits 2 for a misspelled log flag instead of ignoring it",
      function()
        -- `--log-lev warn` is no option; taking it silently would leave the
        -- operator at the level they meant to leave.
        local ok, rc, stdout, stderr = pcall(start_rc, { "--log-lev",
          "warn" }, nil, 2)
        assert(ok, "restockd start took --log-lev warn without complaint "
          .. "and kept running: " .. tostring(rc))
        assert.equals(2, rc, "stderr:\n" .. stderr)
        assert.falsy(stdout:find("listening", 1, true))
      end)

    it("lets a good flag beat a bad environment value", function()
      local server = helpers.start { env = { RESTOCK_LOG_LEVEL = "loud" },
        no_migrate = true, db = db, dir = dir,
        args = { "--log-level", "info" } }
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
      assert.equals(0, server:stop())
    end)
  end)
end)
