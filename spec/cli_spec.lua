-- The command line of contract section 1: help, version, usage errors,
-- `check`, the listening line and the signals that stop the server.
local helpers = require "spec.support.helpers"
local cjson = require "cjson"

local null = helpers.null

-- Writes a plugin script into a fresh directory and returns its path.
local function plugin(text)
  local dir = helpers.tmpdir()
  local path = dir .. "/plugin.lua"
  helpers.write_file(path, text)
  return path
end

-- Runs `restockd check --config PATH` on a script with these options.
local function check(options_text)
  local path = plugin('local restock = require "restock"\nrestock.options '
    .. options_text .. "\n")
  return helpers.run({ "check", "--config", path })
end

-- Decodes check's stdout, failing with the text when it is not an object.
local function decode(stdout)
  local ok, v = pcall(cjson.decode, stdout)
  assert(ok and type(v) == "table",
    "expected a JSON object on stdout, got: " .. stdout)
  return v
end

describe("restockd", function()
  after_each(helpers.cleanup)

  describe("--help", function()
    it("prints the usage and exits 0", function()
      local rc, stdout = helpers.run({ "--help" })
      assert.equals(0, rc)
      assert.truthy(stdout:find("migrations run", 1, true), stdout)
      assert.truthy(stdout:find("start", 1, true), stdout)
      assert.truthy(stdout:find("check", 1, true), stdout)
    end)
  end)

  describe("--help's environment", function()
    it("lists every variable of README.md's settings table", function()
      local readme = assert(helpers.read_file("README.md"))
      local table_text = readme:match("\n| setting | flag | environment |"
        .. "[^\n]*\n(.-)\n\n")
      assert(table_text, "README.md has no settings table")
      local names = {}
      for line in table_text:gmatch("[^\n]+") do
        local env = line:match("^|[^|]*|[^|]*|%s*`([%u_]+)`%s*|")
        if env then
          names[#names + 1] = env
        end
      end
      assert.truthy(#names >= 10, "too few variables found in README.md's "
        .. "table:\n" .. table_text)
      local rc, stdout = helpers.run({ "--help" })
      assert.equals(0, rc)
      for _, name in ipairs(names) do
        assert.truthy(stdout:find("%f[%w_]" .. name .. "%f[^%w_]"),
          "--help does not list " .. name .. ":\n" .. stdout)
      end
    end)
  end)

  describe("--version", function()
    it("prints the version and exits 0", function()
      local rc, stdout = helpers.run({ "--version" })
      assert.equals(0, rc)
      assert.truthy(stdout:match("^restockd 0%.1%.0\n?$"), stdout)
    end)
  end)

  describe("usage errors", function()
    it("exits 2 with a message on stderr for an unknown command", function()
      local rc, stdout, stderr = helpers.run({ "frobnicate" })
      assert.equals(2, rc)
      assert.truthy(#stderr > 0, "expected a message on stderr")
      assert.is_nil(stdout:find("listening", 1, true))
    end)

    it("exits 2 for an unknown flag", function()
      local dir = helpers.tmpdir()
      local rc, _, stderr = helpers.run({ "migrations", "run", "--db",
        dir .. "/x.db", "--frobnicate" })
      assert.equals(2, rc)
      assert.truthy(#stderr > 0, "expected a message on stderr")
    end)

    it("exits 2 for an unknown top-level flag", function()
      local rc, _, stderr = helpers.run({ "--frobnicate" })
      assert.equals(2, rc)
      assert.truthy(#stderr > 0, "expected a message on stderr")
    end)

    it("exits 2 for an unknown migrations subcommand", function()
      local dir = helpers.tmpdir()
      local rc, _, stderr = helpers.run({ "migrations", "frobnicate",
        "--db", dir .. "/x.db" })
      assert.equals(2, rc)
      assert.truthy(#stderr > 0, "expected a message on stderr")
    end)

    it("exits 2 when --port is not a number", function()
      local dir = helpers.tmpdir()
      local db = dir .. "/restock.db"
      assert.equals(0, (helpers.run({ "migrations", "run", "--db", db })))
      local config = plugin('require "restock".options {}\n')
      local rc, _, stderr = helpers.run({ "start", "--db", db, "--config",
        config, "--port", "http" }, nil, { timeout = 10 })
      assert.equals(2, rc)
      assert.truthy(#stderr > 0, "expected a message on stderr")
    end)
  end)

  describe("check", function()
    it("prints every option's default as JSON and exits 0", function()
      local rc, stdout, stderr = check("{}")
      assert.equals(0, rc, stderr)
      local o = decode(stdout)
      assert.equals(0, o.trigger_delay)
      assert.equals(0, o.inventory_required)
      assert.equals(1000, o.batch_size)
      assert.equals(5, o.max_attempts)
      assert.equals(30000, o.handler_timeout)
      assert.equals(0, o.notify_per_unit)
      assert.equals(3600000, o.notify_interval)
      assert.equals(0, o.subscribe_rate_limit)
      assert.equals(false, o.trust_proxy)
      assert.truthy(o.store_cors == nil or o.store_cors == null,
        "store_cors should be absent or null, got " .. tostring(o.store_cors))
    end)

    it("prints the values the script sets", function()
      local rc, stdout, stderr = check([[{
        trigger_delay = 250,
        inventory_required = 3,
        batch_size = 10,
        max_attempts = 2,
        handler_timeout = 1500,
        notify_per_unit = 0.5,
        notify_interval = 60000,
        subscribe_rate_limit = 30,
        trust_proxy = true,
        store_cors = "https://shop.example,https://www.shop.example",
      }]])
      assert.equals(0, rc, stderr)
      local o = decode(stdout)
      assert.equals(250, o.trigger_delay)
      assert.equals(3, o.inventory_required)
      assert.equals(10, o.batch_size)
      assert.equals(2, o.max_attempts)
      assert.equals(1500, o.handler_timeout)
      assert.equals(0.5, o.notify_per_unit)
      assert.equals(60000, o.notify_interval)
      assert.equals(30, o.subscribe_rate_limit)
      assert.equals(true, o.trust_proxy)
      assert.equals("https://shop.example,https://www.shop.example",
        o.store_cors)
    end)

    it("keeps the defaults of the options a script leaves out", function()
      local rc, stdout, stderr = check("{ batch_size = 7 }")
      assert.equals(0, rc, stderr)
      local o = decode(stdout)
      assert.equals(7, o.batch_size)
      assert.equals(5, o.max_attempts)
      assert.equals(0, o.trigger_delay)
    end)

    it("also works for a script that never calls restock.options", function()
      local path = plugin("-- Nothing configured.\n")
      local rc, stdout, stderr = helpers.run({ "check", "--config", path })
      assert.equals(0, rc, stderr)
      assert.equals(1000, decode(stdout).batch_size)
    end)

    it("exits 2 naming an unknown option", function()
      local rc, _, stderr = check("{ trigger_dealy = 5 }")
      assert.equals(2, rc)
      assert.truthy(stderr:find("trigger_dealy", 1, true), stderr)
    end)

    it("exits 2 naming an option of the wrong type", function()
      local rc, _, stderr = check('{ trigger_delay = "x" }')
      assert.equals(2, rc)
      assert.truthy(stderr:find("trigger_delay", 1, true), stderr)
    end)

    it("exits 2 naming a boolean option given a number", function()
      local rc, _, stderr = check("{ trust_proxy = 1 }")
      assert.equals(2, rc)
      assert.truthy(stderr:find("trust_proxy", 1, true), stderr)
    end)

    it("exits 2 naming a negative option", function()
      local rc, _, stderr = check("{ batch_size = -1 }")
      assert.equals(2, rc)
      assert.truthy(stderr:find("batch_size", 1, true), stderr)
    end)

    it("exits 2 for a script with a syntax error", function()
      local path = plugin('local restock = require "restock"\n'
        .. "restock.options {\n")
      local rc, stdout, stderr = helpers.run({ "check", "--config", path })
      assert.equals(2, rc)
      assert.truthy(#stderr > 0, "expected a message on stderr")
      assert.is_nil(stdout:find("batch_size", 1, true))
    end)

    it("exits 2 for a script that raises an error", function()
      local path = plugin('error("the plugin is broken")\n')
      local rc, _, stderr = helpers.run({ "check", "--config", path })
      assert.equals(2, rc)
      assert.truthy(stderr:find("the plugin is broken", 1, true), stderr)
    end)

    it("exits 2 when the script does not exist", function()
      local dir = helpers.tmpdir()
      local rc, _, stderr = helpers.run({ "check", "--config",
        dir .. "/missing.lua" })
      assert.equals(2, rc)
      assert.truthy(#stderr > 0, "expected a message on stderr")
    end)

    it("reads the script named by RESTOCK_CONFIG", function()
      local path = plugin('require "restock".options { batch_size = 42 }\n')
      local rc, stdout, stderr = helpers.run({ "check" },
        { RESTOCK_CONFIG = path })
      assert.equals(0, rc, stderr)
      assert.equals(42, decode(stdout).batch_size)
    end)

    it("prefers --config to RESTOCK_CONFIG", function()
      local env_path = plugin('require "restock".options { batch_size = 1 }\n')
      local flag_path = plugin('require "restock".options { batch_size = 2 }\n')
      local rc, stdout, stderr = helpers.run({ "check", "--config", flag_path },
        { RESTOCK_CONFIG = env_path })
      assert.equals(0, rc, stderr)
      assert.equals(2, decode(stdout).batch_size)
    end)
  end)

  describe("start", function()
    it("prints its real address when given --port 0", function()
      local server = helpers.start()
      assert.equals("127.0.0.1", server.host)
      assert.truthy(server.port > 0 and server.port < 65536)
      assert.truthy(server:stdout():find(string.format(
        "restockd listening on http://127.0.0.1:%d\n", server.port), 1, true),
        server:stdout())
      local res = helpers.request(server, "GET", "/health")
      assert.equals(200, res.status)
    end)

    it("listens on the port given with --port", function()
      local port = helpers.free_port()
      local server = helpers.start({ port = port })
      assert.equals(port, server.port)
      assert.equals(200, helpers.request(server, "GET", "/health").status)
    end)

    it("takes the port from PORT when --port is absent", function()
      local port = helpers.free_port()
      local server = helpers.start({ port = false,
        env = { PORT = tostring(port) } })
      assert.equals(port, server.port)
      assert.equals(200, helpers.request(server, "GET", "/health").status)
    end)

    it("prefers --port to PORT", function()
      local port = helpers.free_port()
      local server = helpers.start({ port = 0,
        env = { PORT = tostring(port) } })
      assert.are_not.equal(port, server.port)
      assert.equals(200, helpers.request(server, "GET", "/health").status)
    end)

    -- Without the token every admin call answers 401, which looks like a
    -- broken server unless the log says why.
    for _, token in ipairs({ false, "" }) do
      it("warns once that the admin API is disabled when "
        .. "RESTOCK_ADMIN_TOKEN is " .. (token and "empty" or "unset"),
        function()
          local server = helpers.start { env = { RESTOCK_ADMIN_TOKEN = token } }
          helpers.assert_error(helpers.request(server, "GET", "/admin/events"),
            401, "unauthorized")
          local stderr = helpers.wait_stderr(server, "RESTOCK_ADMIN_TOKEN")
          assert(stderr, "no line about RESTOCK_ADMIN_TOKEN:\n"
            .. server:stderr())
          local lines = {}
          for line in stderr:gmatch("[^\n]+") do
            if line:find("RESTOCK_ADMIN_TOKEN", 1, true) then
              lines[#lines + 1] = line
            end
          end
          assert.equals(1, #lines, stderr)
          assert.truthy(lines[1]:match("^%S+ WARN "), lines[1])
          assert.truthy(lines[1]:find("admin API is disabled", 1, true),
            lines[1])
          assert.truthy(lines[1]:find("set RESTOCK_ADMIN_TOKEN", 1, true),
            lines[1])
        end)
    end

    it("does not warn about the admin API when the token is set", function()
      local server = helpers.start()
      helpers.assert_status(helpers.admin(server, "GET", "/admin/events"), 200)
      assert.truthy(helpers.wait_stderr(server, "access GET /admin/events"))
      assert.falsy(server:stderr():find("RESTOCK_ADMIN_TOKEN", 1, true),
        server:stderr())
      assert.falsy(server:stderr():find(" WARN ", 1, true), server:stderr())
    end)

    it("exits 2 naming a bad option in the plugin", function()
      local dir = helpers.tmpdir()
      local db = dir .. "/restock.db"
      assert.equals(0, (helpers.run({ "migrations", "run", "--db", db })))
      local config = plugin('require "restock".options { bogus_option = 1 }\n')
      local rc, stdout, stderr = helpers.run({ "start", "--db", db,
        "--config", config, "--port", "0" }, nil, { timeout = 10 })
      assert.equals(2, rc)
      assert.truthy(stderr:find("bogus_option", 1, true), stderr)
      assert.is_nil(stdout:find("listening", 1, true))
    end)

    it("exits 2 for a plugin with a syntax error", function()
      local dir = helpers.tmpdir()
      local db = dir .. "/restock.db"
      assert.equals(0, (helpers.run({ "migrations", "run", "--db", db })))
      local config = plugin("restock.options {{{\n")
      local rc = helpers.run({ "start", "--db", db, "--config", config,
        "--port", "0" }, nil, { timeout = 10 })
      assert.equals(2, rc)
    end)
  end)

  describe("signals", function()
    it("exits 0 on SIGTERM", function()
      local server = helpers.start()
      assert.equals(200, helpers.request(server, "GET", "/health").status)
      assert.equals(0, server:stop("TERM"))
    end)

    it("exits 0 on SIGINT", function()
      local server = helpers.start()
      assert.equals(200, helpers.request(server, "GET", "/health").status)
      assert.equals(0, server:stop("INT"))
    end)

    it("exits 0 on SIGTERM with an idle keep-alive connection open", function()
      local server = helpers.start()
      local conn = helpers.connect(server)
      assert.equals(200, conn:request("GET", "/health").status)
      assert.equals(0, server:stop("TERM", 12))
      assert.is_true(conn:closed(2))
    end)

    it("stops accepting connections once it has exited", function()
      local server = helpers.start()
      assert.equals(0, server:stop("TERM"))
      local conn = helpers.try_connect(server, 1)
      assert.is_nil(conn)
    end)
  end)
end)
