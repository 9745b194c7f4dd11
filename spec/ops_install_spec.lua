-- `make install PREFIX=...`: the release binary, the shipped scripts, the
-- migrations, the example plugin, the docs and the systemd unit land under
-- the prefix, and the installed binary runs from there: it migrates, starts
-- on port 0 and finds `require "sendgrid"` in PREFIX/share/restockd/scripts,
-- not in the source tree it was built from. docs/operations.md's steps for
-- systemd, run as written into a DESTDIR, leave a configuration that the
-- unprivileged user the unit runs as can load, and secrets it cannot read.
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
    "timeout -k 5 300 make -j2 -s %s >%s 2>&1", args, shquote(log)))
  local out = read_file(log) or ""
  os.remove(log)
  local rc = how == "exit" and code or 128 + (code or 0)
  return rc, out
end

-- Runs a shell command; returns its exit code and its output (both
-- streams).
local function sh(cmd)
  local log = os.tmpname()
  local ok, how, code = os.execute("( " .. cmd .. " ) >" .. shquote(log)
    .. " 2>&1")
  local out = read_file(log) or ""
  os.remove(log)
  return how == "exit" and code or 128 + (code or 0), out
end

-- The uid and gid of the unprivileged user the checks run as: nobody, as
-- systemd's DynamicUser= gives a user that owns nothing on the system.
local NOBODY = 65534

-- Runs argv (a list of words) as NOBODY with a bare environment plus env;
-- returns the exit code, stdout and stderr. The caller is root.
local function as_nobody(argv, env)
  local words = { "setpriv", "--reuid=" .. NOBODY, "--regid=" .. NOBODY,
    "--clear-groups", "env", "-i", "PATH=/usr/bin:/bin" }
  local names = {}
  for k in pairs(env or {}) do
    names[#names + 1] = k
  end
  table.sort(names)
  for _, k in ipairs(names) do
    words[#words + 1] = shquote(k .. "=" .. env[k])
  end
  for _, w in ipairs(argv) do
    words[#words + 1] = shquote(w)
  end
  local out, err = os.tmpname(), os.tmpname()
  local ok, how, code = os.execute(string.format("cd / && timeout -k 2 30 %s"
    .. " </dev/null >%s 2>%s", table.concat(words, " "), shquote(out),
    shquote(err)))
  local stdout, stderr = read_file(out) or "", read_file(err) or ""
  os.remove(out)
  os.remove(err)
  return how == "exit" and code or 128 + (code or 0), stdout, stderr
end

local function is_root()
  return capture("id -u"):match("^0%s") ~= nil
end

-- The fenced ```sh blocks of a markdown file, in order, each a string.
local function sh_blocks(path)
  local text = assert(read_file(path), "no " .. path)
  local out = {}
  for block in text:gmatch("\n```sh\n(.-\n)```") do
    out[#out + 1] = block
  end
  return out
end

-- The lines of a unit file that are comments (# or ;), in order.
local function comment_lines(text)
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^[#;]") then
      out[#out + 1] = line
    end
  end
  return out
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
      local scripts = listing(repo .. "/scripts", ".lua")
      for t in lfs.dir(repo .. "/scripts/templates") do
        if t:sub(1, 1) ~= "." then
          scripts[#scripts + 1] = "templates/" .. t
        end
      end
      for _, name in ipairs({ "sendgrid.lua", "webhook.lua", "smtp.lua",
        "restock_mail.lua", "templates/restocked.en.html" }) do
        local found = false
        for _, s in ipairs(scripts) do
          found = found or s == name
        end
        assert(found, name .. " is not in the source tree's scripts")
      end
      for _, name in ipairs(scripts) do
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
      local docs = listing(repo .. "/docs", ".md")
      assert.truthy(#docs >= 1)
      docs[#docs + 1] = "openapi.yaml"
      for _, name in ipairs(docs) do
        assert.equals(read_file(repo .. "/docs/" .. name),
          read_file(prefix .. "/share/doc/restockd/" .. name),
          name .. " is not installed as it is in docs/")
      end
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

  it("gives the unit a Documentation= that exists, and its comment intact",
    function()
      local dest = helpers.tmpdir()
      local rc, out = make("install DESTDIR=" .. shquote(dest)
        .. " PREFIX=/usr/local")
      assert(rc == 0, "make install DESTDIR= exited " .. rc .. ":\n" .. out)
      local unit = read_file(dest
        .. "/usr/local/lib/systemd/system/restockd.service")
      assert(unit, "no unit under DESTDIR")
      local docs = {}
      for line in unit:gmatch("[^\n]+") do
        local v = line:match("^Documentation%s*=%s*(.-)%s*$")
        for uri in (v or ""):gmatch("%S+") do
          docs[#docs + 1] = uri
        end
      end
      local files = 0
      for _, uri in ipairs(docs) do
        local path = uri:match("^file://(/.*)$")
        if path then
          files = files + 1
          local attr = lfs.attributes(dest .. path)
          assert(attr, "Documentation=" .. uri .. " names nothing that "
            .. "make install installed")
          if attr.mode == "directory" then
            assert.truthy(#listing(dest .. path, ".md") > 0,
              "Documentation=" .. uri .. " names a folder with no "
              .. "documentation in it")
          else
            assert.equals("file", attr.mode)
            assert.truthy(#(read_file(dest .. path) or "") > 0,
              "Documentation=" .. uri .. " names an empty file")
          end
        end
      end
      assert.truthy(files >= 1, "no file:// Documentation= in the unit:\n"
        .. unit)
      -- The install fills in the settings, not the comment that explains
      -- them.
      local source = assert(read_file(repo .. "/docs/restockd.service"))
      assert.same(comment_lines(source), comment_lines(unit))
      assert.truthy(#comment_lines(source) > 0)
    end)

  it("follows docs/operations.md into a DESTDIR: the service's user loads "
    .. "plugin.lua and migrates, and cannot read the secrets", function()
    if not is_root() then
      pending("needs root, to switch to an unprivileged user")
      return
    end
    local dest = helpers.tmpdir()
    -- Like /, the root of the DESTDIR is open to every user.
    assert(os.execute("chmod 755 " .. shquote(dest)))
    local rc, out = make("install DESTDIR=" .. shquote(dest)
      .. " PREFIX=/usr/local")
    assert(rc == 0, "make install DESTDIR= exited " .. rc .. ":\n" .. out)

    -- The block of docs/operations.md that sets up /etc/restockd, run as
    -- root with the usual umask, its paths moved under DESTDIR; systemctl
    -- is left to systemd.
    local steps
    for _, block in ipairs(sh_blocks(repo .. "/docs/operations.md")) do
      if block:find("/etc/restockd/plugin.lua", 1, true) then
        steps = block
        break
      end
    end
    assert(steps, "docs/operations.md shows no ```sh block that makes "
      .. "/etc/restockd/plugin.lua")
    local script, skipped = { "set -eu", "umask 022" }, {}
    for line in steps:gmatch("[^\n]+") do
      if line:match("^%s*systemctl%s") then
        skipped[#skipped + 1] = line
      elseif not line:match("^%s*#") then
        script[#script + 1] = (line:gsub("/etc/restockd", dest
          .. "/etc/restockd"):gsub("/usr/local/", dest .. "/usr/local/"))
      end
    end
    assert.truthy(#script > 2, "no commands in the block:\n" .. steps)
    assert.truthy(table.concat(skipped, "\n"):find("enable", 1, true),
      "the steps do not enable the service:\n" .. steps)
    local src = table.concat(script, "\n") .. "\n"
    local script_path = dest .. "/steps.sh"
    helpers.write_file(script_path, src)
    rc, out = sh("sh " .. shquote(script_path))
    assert(rc == 0, "the documented steps exited " .. rc .. ":\n" .. src
      .. "\n" .. out)

    local etc = dest .. "/etc/restockd"
    local config = etc .. "/plugin.lua"
    local env_file = etc .. "/env"
    local function stat(path)
      local mode, owner = capture("stat -c '%a %u' " .. shquote(path)
        .. " 2>/dev/null"):match("^(%d+) (%d+)")
      assert(mode, "no " .. path)
      return tonumber(mode, 8), tonumber(owner)
    end
    -- The configuration: root's, readable by all, writable by root only.
    for _, path in ipairs({ etc, config }) do
      local mode, owner = stat(path)
      assert.equals(0, owner, path .. " is not root's")
      assert.truthy(mode & 4 ~= 0, path .. " is not readable by others")
      assert.truthy(mode & 0x12 == 0, path .. " is writable by others")
    end
    assert.equals(read_file(repo .. "/plugin.lua.example"), read_file(config))
    -- The secrets: root's alone, and the admin token is there.
    local mode, owner = stat(env_file)
    assert.equals(0, owner)
    assert.equals(string.format("%o", 6 * 64), string.format("%o", mode),
      env_file .. " is not 0600")
    local env_text = assert(read_file(env_file))
    local token = env_text:match("^RESTOCK_ADMIN_TOKEN=(%S+)\n")
    assert(token and #token >= 24, "no RESTOCK_ADMIN_TOKEN line in "
      .. env_file .. ":\n" .. env_text)

    local bin = dest .. "/usr/local/bin/restockd"
    local nrc, nout, nerr = as_nobody({ "cat", env_file })
    assert.are_not.equal(0, nrc, "the service's user reads the secrets")
    assert.falsy(nout:find(token, 1, true))

    -- The service's user loads the installed plugin.lua, with the
    -- environment systemd would give it from the env file.
    nrc, nout, nerr = as_nobody({ bin, "check", "--config", config },
      { RESTOCK_ADMIN_TOKEN = token })
    assert(nrc == 0, "restockd check as the service's user exited "
      .. nrc .. ":\n" .. nerr)
    local ok, options = pcall(require("cjson").decode, nout)
    assert(ok and type(options) == "table", "check printed: " .. nout)
    assert.equals(0, options.trigger_delay)

    -- And migrates a database in a directory of its own, as
    -- StateDirectory= gives it.
    local state = dest .. "/var/lib/restockd"
    assert(os.execute("install -d -m 700 -o " .. NOBODY .. " -g " .. NOBODY
      .. " " .. shquote(state)))
    local db = state .. "/restock.db"
    nrc, nout, nerr = as_nobody({ bin, "migrations", "run", "--db", db })
    assert(nrc == 0, "migrations run as the service's user exited " .. nrc
      .. ":\n" .. nerr)
    nrc, nout, nerr = as_nobody({ bin, "migrations", "status", "--db", db })
    assert.equals(0, nrc, nerr)
    assert.falsy(nout:lower():find("pending"), nout)
    local _, db_owner = stat(db)
    assert.equals(NOBODY, db_owner)
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
-- Loads the installed default templates, or fails to start.
require("smtp").setup { url = "smtp://127.0.0.1:25",
  from = "shop@example.com", public_url = "https://restock.example.com" }
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

-- What `make run` and `make test` install (issue 11): running needs the
-- build's packages only; the test runner, the browsers and the PostgreSQL
-- server come with `make test`. Read from what make would run (`-n`), with
-- every target considered out of date (`-B`), so nothing is installed or
-- built here.
describe("the packages make installs", function()
  -- The package names of every install_missing loop in make's plan.
  local function packages(target)
    local out = capture("make -s -n -B " .. target .. " 2>&1")
    local set = {}
    for list in out:gmatch("for p in ([^;]+); do") do
      for p in list:gmatch("%S+") do
        set[p] = true
      end
    end
    return set, out
  end

  it("are the build's only for make run, and the tests' too for make test",
    function()
      local run, out = packages("run")
      for _, p in ipairs({ "build-essential", "pkg-config", "liblua5.4-dev",
        "libuv1-dev", "libsqlite3-dev", "libjansson-dev", "libssl-dev",
        "node-llhttp", "libpq-dev", "libyajl-dev" }) do
        assert.truthy(run[p], p .. " is not installed by make run:\n" .. out)
      end
      local test_only = { "lua-busted", "lua-socket", "chromium",
        "chromium-driver", "python3-selenium", "postgresql",
        "python3-aiosmtpd" }
      for _, p in ipairs(test_only) do
        assert.is_nil(run[p], "make run installs the test package " .. p)
      end
      local test, tout = packages("test")
      for _, p in ipairs(test_only) do
        assert.truthy(test[p], p .. " is not installed by make test:\n"
          .. tout)
      end
      assert.truthy(test["libuv1-dev"])
    end)
end)

-- The admin token has one home (issue 11): /etc/restockd/env, read by the
-- unit's EnvironmentFile=; neither the unit nor the docs send the operator
-- to `systemctl edit` for it.
describe("the admin token's place", function()
  it("is /etc/restockd/env, in the unit and in docs/operations.md alone",
    function()
      local unit = assert(read_file("docs/restockd.service"))
      local ops = assert(read_file("docs/operations.md"))
      assert.truthy(unit:find("\nEnvironmentFile=-/etc/restockd/env\n", 1,
        true))
      assert.is_nil(unit:find("Environment=RESTOCK_ADMIN_TOKEN", 1, true))
      for name, text in pairs({ ["docs/restockd.service"] = unit,
        ["docs/operations.md"] = ops, ["README.md"] =
        assert(read_file("README.md")) }) do
        assert.is_nil(text:find("systemctl edit", 1, true),
          name .. " still mentions systemctl edit")
      end
      assert.truthy(ops:find("RESTOCK_ADMIN_TOKEN=%s\\n' \"$(head -c 24 "
        .. "/dev/urandom | base64)\" > /etc/restockd/env", 1, true))
    end)
end)
