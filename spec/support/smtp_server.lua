-- Runs spec/support/smtp_server.py, a real SMTP server (aiosmtpd), and reads
-- the messages it received, as Python's email package parsed them.
--
--   local smtp = require "spec.support.smtp_server"
--   after_each(function() smtp.cleanup(); helpers.cleanup() end)
--   local s = smtp.start { "--tempfail-first", 1 }
--   ... s.url ("smtp://127.0.0.1:PORT"), s.port ...
--   local msgs = s:wait_messages(2)   -- each {mail_from=, rcpt_tos=, ...}
--
-- It runs under Debian's /usr/bin/python3, where python3-aiosmtpd is
-- installed (another python3 first on PATH may not have it).
local socket = require "socket"
local cjson = require "cjson"
local lfs = require "lfs"
local fake_http = require "spec.support.fake_http"

local M = {}

local SCRIPT = "spec/support/smtp_server.py"
local running = {}

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end

local function shquote(s)
  s = tostring(s)
  if s:match("^[%w%./_:=@%%+,-]+$") then
    return s
  end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The interpreter that has aiosmtpd.
function M.python()
  if lfs.attributes("/usr/bin/python3") then
    return "/usr/bin/python3"
  end
  return "python3"
end

local function alive(pid)
  local stat = read_file(string.format("/proc/%d/stat", pid))
  local state = stat and stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local Server = {}
Server.__index = Server

-- Every record so far ({kind = "message" | "refused", ...}), in order; only
-- those of `kind` if given.
function Server:records(kind)
  local out = {}
  for line in (read_file(self.log) or ""):gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, line)
    if ok and type(v) == "table" and (kind == nil or v.kind == kind) then
      out[#out + 1] = v
    end
  end
  return out
end

function Server:messages()
  return self:records("message")
end

-- Polls until at least n messages arrived; returns them, or nil after
-- timeout seconds (10 by default).
function Server:wait_messages(n, timeout)
  return fake_http.wait_for(function()
    local m = self:messages()
    if #m >= n then
      return m
    end
  end, timeout or 10)
end

-- The messages counted so far (--count-only).
function Server:count()
  return tonumber((read_file(self.count_file) or ""):match("%d+")) or 0
end

function Server:stderr()
  return read_file(self.err_path) or ""
end

function Server:stop()
  if self.stopped then
    return
  end
  self.stopped = true
  os.execute(string.format("kill -TERM %d 2>/dev/null", self.pid))
  if not fake_http.wait_for(function() return not alive(self.pid) end, 2) then
    os.execute(string.format("kill -KILL %d 2>/dev/null", self.pid))
    fake_http.wait_for(function() return not alive(self.pid) end, 2)
  end
end

-- Starts a server with the given flags (smtp_server.py's) and waits until
-- it accepts connections. Returns the server, with url = "smtp://..." (or
-- "smtps://..." with --tls).
function M.start(args)
  args = args or {}
  local dir = fake_http.tmpdir()
  local s = setmetatable({
    dir = dir,
    log = dir .. "/messages.jsonl",
    count_file = dir .. "/count",
    port_file = dir .. "/port",
    err_path = dir .. "/stderr",
  }, Server)
  local words = { M.python(), shquote(lfs.currentdir() .. "/" .. SCRIPT),
    "--log", shquote(s.log), "--port-file", shquote(s.port_file),
    "--count-file", shquote(s.count_file) }
  local scheme = "smtp"
  for _, a in ipairs(args) do
    if a == "--tls" then
      scheme = "smtps"
    end
    words[#words + 1] = shquote(a)
  end
  local pid_path = dir .. "/pid"
  os.execute(string.format("%s </dev/null >/dev/null 2>%s & echo $! >%s",
    table.concat(words, " "), shquote(s.err_path), shquote(pid_path)))
  s.pid = fake_http.wait_for(function()
    local p = read_file(pid_path)
    return p and tonumber(p:match("%d+"))
  end, 5)
  assert(s.pid, "the SMTP server's pid was not recorded")
  running[#running + 1] = s
  s.port = fake_http.wait_for(function()
    local p = read_file(s.port_file)
    if p and tonumber(p:match("%d+")) then
      return tonumber(p:match("%d+"))
    end
    if not alive(s.pid) then
      error("the SMTP server exited at start:\n" .. s:stderr(), 0)
    end
  end, 10)
  assert(s.port, "the SMTP server printed no port:\n" .. s:stderr())
  local ok = fake_http.wait_for(function()
    local c = socket.tcp()
    c:settimeout(0.5)
    local r = c:connect("127.0.0.1", s.port)
    c:close()
    return r
  end, 5)
  assert(ok, "the SMTP server does not accept connections")
  s.url = string.format("%s://127.0.0.1:%d", scheme, s.port)
  return s
end

-- Stops every server started since the last cleanup (their directories go
-- with fake_http.cleanup).
function M.cleanup()
  for _, s in ipairs(running) do
    pcall(s.stop, s)
  end
  running = {}
end

M._reaper = setmetatable({}, { __gc = function()
  for _, s in ipairs(running) do
    if s.pid and not s.stopped then
      os.execute(string.format("kill -KILL %d 2>/dev/null", s.pid))
    end
  end
end })

return M
