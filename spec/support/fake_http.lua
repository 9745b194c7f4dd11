-- Runs spec/support/fake_http.py, a configurable HTTP(S) server standing in
-- for SendGrid or a webhook receiver, and reads what it recorded.
--
--   local fake = require "spec.support.fake_http"
--   after_each(function() fake.cleanup(); helpers.cleanup() end)
--   local f = fake.start { "--fail-first", 1, "--fail-status", 500 }
--   ... f.url, f.port ...
--   local reqs = f:wait_requests(2)      -- each {method=, path=, headers=, ...}
--
-- fake.cleanup() kills every fake still running (SIGTERM, then SIGKILL) and
-- removes their directories; call it in after_each, before helpers.cleanup,
-- so that it runs even when the test failed. Each fake also exits on its own
-- after --lifetime seconds (120 by default), in case a run dies outright.
local socket = require "socket"
local cjson = require "cjson"
local lfs = require "lfs"

local M = {}

local SCRIPT = "spec/support/fake_http.py"

local running = {}  -- fakes started since the last cleanup
local dirs = {}     -- directories to remove at cleanup

local function shquote(s)
  s = tostring(s)
  if s:match("^[%w%./_:=@%%+,-]+$") then
    return s
  end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end

local function wait_for(fn, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  while true do
    local v = fn()
    if v then
      return v
    end
    if socket.gettime() > deadline then
      return nil
    end
    socket.sleep(0.01)
  end
end
M.wait_for = wait_for

-- A fresh directory of our own (removed by cleanup).
function M.tmpdir()
  local p = assert(io.popen("mktemp -d /tmp/restockd-fake.XXXXXX"))
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  dirs[#dirs + 1] = dir
  return dir
end

-- True while the process runs (a zombie, waiting to be reaped, is gone).
local function alive(pid)
  local stat = read_file(string.format("/proc/%d/stat", pid))
  if not stat then
    return false
  end
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local Fake = {}
Fake.__index = Fake

-- Every record the fake has written so far ({kind="request"|"done", ...}),
-- in order; only those of the given kind if kind is given.
function Fake:records(kind)
  local out = {}
  for line in (read_file(self.log) or ""):gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, line)
    if ok and type(v) == "table" and (kind == nil or v.kind == kind) then
      out[#out + 1] = v
    end
  end
  return out
end

-- The requests received so far.
function Fake:requests()
  return self:records("request")
end

-- Polls until at least n requests have arrived and returns them all, or
-- returns nil after timeout seconds (5 by default).
function Fake:wait_requests(n, timeout)
  return wait_for(function()
    local r = self:requests()
    if #r >= n then
      return r
    end
  end, timeout)
end

-- Polls until at least n requests are over (answered or abandoned by the
-- client) and returns their "done" records, or nil after timeout seconds.
function Fake:wait_done(n, timeout)
  return wait_for(function()
    local r = self:records("done")
    if #r >= n then
      return r
    end
  end, timeout)
end

-- The fake's stderr (a Python traceback, if it crashed).
function Fake:stderr()
  return read_file(self.err_path) or ""
end

-- Stops the fake: SIGTERM, then SIGKILL if it lingers.
function Fake:stop()
  if self.stopped then
    return
  end
  self.stopped = true
  os.execute(string.format("kill -TERM %d 2>/dev/null", self.pid))
  if not wait_for(function() return not alive(self.pid) end, 2) then
    os.execute(string.format("kill -KILL %d 2>/dev/null", self.pid))
    wait_for(function() return not alive(self.pid) end, 2)
  end
end

-- Starts a fake with the given command-line flags (see fake_http.py) and
-- waits until it accepts connections. Returns {port=, url=, log=, pid=}
-- with the methods above; url is "http(s)://127.0.0.1:PORT". `script`
-- runs another fake that takes the same --log and --port-file flags
-- (spec/support/fake_shop.py).
function M.start(args, script)
  args = args or {}
  local dir = M.tmpdir()
  local fake = setmetatable({
    dir = dir,
    log = dir .. "/requests.jsonl",
    port_file = dir .. "/port",
    err_path = dir .. "/stderr",
    tls = false,
  }, Fake)
  local words = { "python3",
    shquote(lfs.currentdir() .. "/" .. (script or SCRIPT)),
    "--log", shquote(fake.log), "--port-file", shquote(fake.port_file) }
  for _, a in ipairs(args) do
    if a == "--tls" then
      fake.tls = true
    end
    words[#words + 1] = shquote(a)
  end
  local pid_path = dir .. "/pid"
  os.execute(string.format("%s </dev/null >%s 2>%s & echo $! >%s",
    table.concat(words, " "), shquote(dir .. "/stdout"),
    shquote(fake.err_path), shquote(pid_path)))
  local pid = wait_for(function()
    local s = read_file(pid_path)
    return s and tonumber(s:match("%d+"))
  end, 5)
  assert(pid, "the fake server's pid was not recorded")
  fake.pid = pid
  running[#running + 1] = fake

  local port = wait_for(function()
    local s = read_file(fake.port_file)
    local p = s and tonumber(s:match("%d+"))
    if p then
      return p
    end
    if not alive(pid) then
      error("the fake server exited at start:\n" .. fake:stderr(), 0)
    end
  end, 10)
  assert(port, "the fake server printed no port in time:\n" .. fake:stderr())
  fake.port = port
  -- Ready once a connection is accepted.
  local ok = wait_for(function()
    local s = socket.tcp()
    s:settimeout(0.5)
    local c = s:connect("127.0.0.1", port)
    s:close()
    return c
  end, 5)
  assert(ok, "the fake server does not accept connections")
  fake.url = string.format("%s://127.0.0.1:%d", fake.tls and "https" or "http",
    port)
  return fake
end

-- A port where nothing listens (bound a moment ago, then closed).
function M.closed_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Makes a self-signed certificate for 127.0.0.1 (CN and IP SAN) with the
-- openssl CLI, valid for a day. Returns the certificate and key paths; the
-- certificate doubles as the CA bundle that trusts it.
function M.make_cert()
  local dir = M.tmpdir()
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  local cmd = string.format("openssl req -x509 -newkey ec -pkeyopt "
    .. "ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 "
    .. "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s "
    .. ">%s 2>&1", shquote(key), shquote(cert), shquote(dir .. "/openssl.log"))
  local ok = os.execute(cmd)
  assert(ok == true, "openssl req failed:\n"
    .. (read_file(dir .. "/openssl.log") or ""))
  return cert, key
end

-- Stops every fake and removes their directories. Errors are collected and
-- raised once everything is cleaned up.
function M.cleanup()
  local problems = {}
  for _, fake in ipairs(running) do
    local ok, err = pcall(fake.stop, fake)
    if not ok then
      problems[#problems + 1] = tostring(err)
    end
  end
  running = {}
  for _, dir in ipairs(dirs) do
    if dir:match("^/tmp/restockd%-fake%.") then
      os.execute("rm -rf " .. shquote(dir))
    end
  end
  dirs = {}
  if #problems > 0 then
    error(table.concat(problems, "\n"), 0)
  end
end

-- Kills fakes left running if the Lua state closes without a cleanup.
M._reaper = setmetatable({}, { __gc = function()
  for _, fake in ipairs(running) do
    if fake.pid and not fake.stopped then
      os.execute(string.format("kill -KILL %d 2>/dev/null", fake.pid))
    end
  end
end })

return M
