-- `make install PREFIX=...`: the release binary, the shipped scripts, the
-- migrations, the example plugin and the systemd unit land under the
-- prefix, and the installed binary runs from there: it migrates, starts on
-- port 0 and finds `require "sendgrid"` in PREFIX/share/restockd/scripts,
-- not in the source tree it was built from.
local helpers = require "spec.support.helpers"
local fake_http = require "spec.support.fake_http"
local outbound = require "spec.support.outbound"
local lfs = require "lfs"

local shquote = helpers.shquote
local read_file = helpers.read_file

-- The directory a command prints (first line), or nil.
local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local function realpath(path)
  local out = capture("realpath -e " .. shquote(path) .. " 2>/dev/null")
  return out:match("^([^\n]+)")
end

local function is_under(path, dir)
  return path:sub(1, #dir + 1) == dir .. "/"
end

-- Runs make in the repository root with the given arguments; returns the
-- exit code and the output. The release build is compiled if it is missing
-- or stale, which may take a while the first time.
local function make(args)
  local log = os.tmpname()
  local ok, how, code = os.execute(string.format(
    "timeout -k 5 300 make -j4 -s %s >%s 2>&1", args, shquote(log)))
  local out = read_file(log) or ""
  os.remove(log)
  local rc = how == "exit" and code or 128 + (code or 0)
  return rc, out
end

local function listing(dir, suffix)
  local out = {}
  for name in lfs.dir(dir) do
    if name:sub(-#suffix) == suffix then
      out[#out + 1] = name
    end
  end
  table.sort(out)
  return out
end

describe("make install", function()
  local prefix, repo
  local real_binary = helpers.binary

  setup(function()
    repo = lfs.currentdir()
    prefix = capture("mktemp -d /tmp/restockd-install.XXXXXX"):match("^(%S+)")
    assert(prefix and prefix ~= "", "mktemp failed")
    prefix = realpath(prefix)
    local rc, out = make("install PREFIX=" .. shquote(prefix))
    assert(rc == 0, "make install exited " .. rc .. ":\n" .. out)
  end)

  teardown(function()
    if prefix and prefix:match("^/tmp/restockd%-install%.") then
      os.execute("rm -rf " .. shquote(prefix))
    end
  end)

  -- Servers of these tests run the installed binary.
  before_each(function()
    helpers.binary = function()
      return prefix .. "/bin/restockd"
    end
  end)

  after_each(function()
    helpers.binary = real_binary
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  it("installs the binary, scripts, migrations, example and unit",
    function()
      local bin = prefix .. "/bin/restockd"
      local attr = lfs.attributes(bin)
      assert(attr and attr.mode == "file", "no " .. bin)
      assert.equals("rwxr-xr-x", attr.permissions)
      for _, name in ipairs({ "sendgrid.lua", "webhook.lua" }) do
        local installed = read_file(prefix .. "/share/restockd/scripts/"
          .. name)
        assert(installed, "no installed " .. name)
        assert.equals(read_file(repo .. "/scripts/" .. name), installed,
          name .. " differs from the source tree's")
      end
      local sql = listing(repo .. "/migrations/sqlite", ".sql")
      assert.truthy(#sql >= 1)
      assert.same(sql, listing(prefix .. "/share/restockd/migrations/sqlite",
        ".sql"))
      for _, name in ipairs(sql) do
        assert.equals(read_file(repo .. "/migrations/sqlite/" .. name),
          read_file(prefix .. "/share/restockd/migrations/sqlite/" .. name))
      end
      assert.equals(read_file(repo .. "/plugin.lua.example"),
        read_file(prefix .. "/share/restockd/plugin.lua.example"))
      -- Nothing under the prefix is writable by others.
      local loose = capture("find " .. shquote(prefix)
        .. " -perm -o+w -not -type l")
      assert.equals("", loose)

      local rc, out = helpers.run({ "--version" })
      assert.equals(0, rc)
      assert.truthy(out:match("^restockd %d+%.%d+%.%d+"), out)
    end)

  it("writes a systemd unit with the prefix filled in", function()
    local path = prefix .. "/lib/systemd/system/restockd.service"
    local unit = read_file(path)
    assert(unit, "no " .. path)
    assert.falsy(unit:find("@PREFIX@", 1, true), "@PREFIX@ left in the unit")
    -- The settings, one per line, comments skipped.
    local settings = {}
    for line in unit:gmatch("[^\n]+") do
      local k, v = line:match("^%s*([%w]+)%s*=%s*(.-)%s*$")
      if k and not line:match("^%s*[#;]") then
        settings[k] = settings[k] or {}
        table.insert(settings[k], v)
      end
    end
    local function one(key)
      local v = settings[key]
      assert(v, "no " .. key .. "= in the unit")
      return v[#v]
    end
    local start = one("ExecStart")
    assert.truthy(start:find(prefix .. "/bin/restockd start", 1, true),
      "ExecStart=" .. start)
    local pre = settings.ExecStartPre and table.concat(settings.ExecStartPre,
      "\n") or ""
    assert.truthy(pre:find(prefix .. "/bin/restockd migrations run", 1, true),
      "no ExecStartPre that runs the migrations: " .. pre)
    assert.truthy(settings.User or (settings.DynamicUser
      and one("DynamicUser"):match("^[yY]")), "neither User= nor DynamicUser=yes")
    assert.equals("strict", one("ProtectSystem"))
    assert.truthy(one("StateDirectory"):match("%S"))
    local reload = one("ExecReload")
    assert.truthy(reload:find("HUP", 1, true), "ExecReload=" .. reload)
    assert.truthy(reload:find("$MAINPID", 1, true), "ExecReload=" .. reload)
    -- The database lives in the state directory, which ProtectSystem=strict
    -- leaves writable.
    local env = table.concat(settings.Environment or {}, "\n")
    local db = env:match("RESTOCK_DB=(%S+)")
    assert(db, "no RESTOCK_DB in the unit's Environment=")
    assert.truthy(db:find("%S/", 1, true) or db:find("/var/lib/", 1, true),
      "RESTOCK_DB=" .. db .. " is outside the state directory")
    -- systemd waits longer than restockd's own 10 s shutdown grace.
    if settings.TimeoutStopSec then
      local t = tonumber(one("TimeoutStopSec"):match("^(%d+)s?$"))
      assert.truthy(t and t > 10, "TimeoutStopSec=" .. one("TimeoutStopSec"))
    end
    if os.execute("command -v systemd-analyze >/dev/null 2>&1") then
      local out = capture("systemd-analyze verify --man=no " .. shquote(path)
        .. " 2>&1; echo rc=$?")
      assert.truthy(out:match("rc=0%s*$"), "systemd-analyze verify:\n" .. out)
    end
  end)

  it("honours DESTDIR without writing it into the unit", function()
    local dest = helpers.tmpdir()
    local rc, out = make("install DESTDIR=" .. shquote(dest)
      .. " PREFIX=/opt/restockd")
    assert(rc == 0, "make install DESTDIR= exited " .. rc .. ":\n" .. out)
    assert.truthy(lfs.attributes(dest .. "/opt/restockd/bin/restockd"))
    assert.truthy(lfs.attributes(dest
      .. "/opt/restockd/share/restockd/scripts/sendgrid.lua"))
    local unit = read_file(dest
      .. "/opt/restockd/lib/systemd/system/restockd.service")
    assert(unit, "no unit under DESTDIR")
    assert.truthy(unit:find("ExecStart=/opt/restockd/bin/restockd start", 1,
      true))
    assert.falsy(unit:find(dest, 1, true), "DESTDIR leaked into the unit")
  end)

  it("runs migrations and starts, finding the installed scripts",
    function()
      local dir = helpers.tmpdir()
      local record = dir .. "/searchpath.txt"
      local server = helpers.start { dir = dir,
        -- An empty RESTOCK_SCRIPTS counts as unset.
        env = { RESTOCK_SCRIPTS = "" },
        plugin = string.format([[
local restock = require "restock"
local sendgrid = require("sendgrid")
local webhook = require("webhook")
local f = assert(io.open(%q, "w"))
f:write(package.searchpath("sendgrid", package.path), "\n")
f:write(package.searchpath("webhook", package.path), "\n")
f:write(type(sendgrid.setup), "\n")
f:close()
]], record) }
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
      local lines = {}
      for line in (read_file(record) or ""):gmatch("[^\n]+") do
        lines[#lines + 1] = line
      end
      assert.equals(3, #lines, "the plugin recorded: "
        .. tostring(read_file(record)))
      local scripts = prefix .. "/share/restockd/scripts"
      for i, name in ipairs({ "sendgrid", "webhook" }) do
        local found = realpath(lines[i])
        assert(found, "the recorded path does not exist: " .. lines[i])
        assert.equals(scripts .. "/" .. name .. ".lua", found)
        assert.falsy(is_under(found, repo), name .. " came from the source "
          .. "tree: " .. found)
      end
      assert.equals("function", lines[3])

      -- The database was migrated by the installed binary.
      local rc, out = helpers.run({ "migrations", "status", "--db",
        server.db })
      assert.equals(0, rc)
      for _, name in ipairs(listing(repo .. "/migrations", ".sql")) do
        assert.truthy(out:find(name:gsub("%.sql$", ""), 1, true),
          "migrations status does not list " .. name .. ":\n" .. out)
      end
      assert.falsy(out:lower():find("pending"), out)
    end)

  it("mails through SendGrid with the installed example plugin", function()
    local fake = fake_http.start()
    local dir = helpers.tmpdir()
    local config = dir .. "/plugin.lua"
    helpers.write_file(config,
      assert(read_file(prefix .. "/share/restockd/plugin.lua.example")))
    local rc, out, err = helpers.run({ "check", "--config", config },
      { RESTOCK_SCRIPTS = "", SENDGRID_API_KEY = "SG.test" })
    assert.equals(0, rc, err)
    assert.truthy(out:find("trigger_delay", 1, true))

    local server = helpers.start { dir = dir, config = config, env = {
      RESTOCK_SCRIPTS = "", SENDGRID_API_KEY = "SG.test",
      SENDGRID_API_URL = fake.url } }
    outbound.sold_out(server, "v1")
    outbound.subscribe(server, "v1", "ann@example.com")
    outbound.set_quantity(server, "v1", 3)
    local reqs = fake:wait_requests(1, 10)
    assert(reqs, "SendGrid got no request\n" .. server:stderr())
    assert.equals("POST", reqs[1].method)
    assert.equals("/v3/mail/send", reqs[1].path)
    assert.equals("Bearer SG.test", reqs[1].headers["authorization"])
    assert.same({ "ann@example.com" }, reqs[1].recipients)
  end)
end)
