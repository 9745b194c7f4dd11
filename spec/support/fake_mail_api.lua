-- Runs spec/support/fake_mail_api.py, the fakes of the Mailgun, Postmark
-- and SES sending APIs, and reads the requests it checked.
--
--   local api = require "spec.support.fake_mail_api"
--   after_each(function() api.cleanup(); fake_http.cleanup(); ... end)
--   local f = api.start("mailgun", { "--key", KEY })  -- see the .py for shapes
--   ... f.url ...
--   local reqs = f:wait_requests(1)   -- each {problems=, fields= or json=}
local cjson = require "cjson"
local lfs = require "lfs"
local fake_http = require "spec.support.fake_http"

local M = {}
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

local Fake = {}
Fake.__index = Fake

function Fake:requests()
  local out = {}
  for line in (read_file(self.log) or ""):gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, line)
    if ok and type(v) == "table" then
      out[#out + 1] = v
    end
  end
  return out
end

function Fake:wait_requests(n, timeout)
  return fake_http.wait_for(function()
    local r = self:requests()
    if #r >= n then
      return r
    end
  end, timeout or 10)
end

function Fake:stderr()
  return read_file(self.dir .. "/stderr") or ""
end

-- Starts the fake of `provider` with more flags; returns it with url.
function M.start(provider, args)
  local dir = fake_http.tmpdir()
  local f = setmetatable({ dir = dir, log = dir .. "/requests.jsonl",
    provider = provider }, Fake)
  local words = { "python3",
    shquote(lfs.currentdir() .. "/spec/support/fake_mail_api.py"),
    "--provider", provider, "--log", shquote(f.log), "--port-file",
    shquote(dir .. "/port") }
  for _, a in ipairs(args or {}) do
    words[#words + 1] = shquote(a)
  end
  os.execute(string.format("%s </dev/null >/dev/null 2>%s & echo $! >%s",
    table.concat(words, " "), shquote(dir .. "/stderr"),
    shquote(dir .. "/pid")))
  f.pid = fake_http.wait_for(function()
    local p = read_file(dir .. "/pid")
    return p and tonumber(p:match("%d+"))
  end, 5)
  running[#running + 1] = f
  f.port = fake_http.wait_for(function()
    local p = read_file(dir .. "/port")
    return p and tonumber(p:match("%d+"))
  end, 10)
  assert(f.port, "the fake " .. provider .. " did not start:\n" .. f:stderr())
  f.url = "http://127.0.0.1:" .. f.port
  return f
end

function M.cleanup()
  for _, f in ipairs(running) do
    if f.pid then
      os.execute(string.format("kill -TERM %d 2>/dev/null", f.pid))
    end
  end
  running = {}
end

return M
