-- The walk-throughs of README.md ("Trying it") and docs/multi-warehouse.md,
-- run as a reader runs them: their ```sh blocks are taken from the markdown
-- files themselves and typed, command by command, into one shell session
-- against a real server started on plugin.lua.example, so that a doc change
-- that breaks a command, or a code change that makes an answer the doc shows
-- untrue, fails here.
--
-- What the docs show, and how it is compared:
--   # => JSON          the answer of the command above it; the JSON may go
--   #    on ...        on over the following comment lines. It is compared
--                      as JSON, every key and value, except that any two
--                      ISO 8601 timestamps match, and so do any two
--                      non-empty strings under a key ending in _token.
--   # logs: TEXT       the server's log has a line holding TEXT (waited for).
-- A command whose answer the doc does not show must not answer an error.
-- The doc's localhost:9000 becomes the server's address and its `export T=`
-- the server's admin token; curl gets a time limit, nothing else changes.
local helpers = require "spec.support.helpers"
local cjson = require "cjson"
local socket = require "socket"

local shquote = helpers.shquote
local read_file = helpers.read_file

-- The ```sh blocks of `text`, in order.
local function sh_blocks(text)
  local out = {}
  for block in text:gmatch("\n```sh\n(.-\n)```") do
    out[#out + 1] = block
  end
  return out
end

-- The part of a markdown text under the heading `title` (any level), up to
-- the next heading of the same or a higher level; lines in fenced blocks
-- (a shell comment) are no headings.
local function section(text, title)
  local out, level, fenced = nil, nil, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^```") then
      fenced = not fenced
    end
    local hashes, t = line:match("^(#+) (.-)%s*$")
    if hashes and not fenced and out and #hashes <= level then
      break
    end
    if out then
      out[#out + 1] = line
    elseif hashes and not fenced and t == title then
      out, level = {}, #hashes
    end
  end
  assert(out, "no heading \"" .. title .. "\"")
  return "\n" .. table.concat(out, "\n") .. "\n"
end

-- True when `text` ends inside a quoted string or after a backslash that
-- joins the next line: the shell command it starts goes on.
local function unfinished(text)
  local quote, i = nil, 1
  while i <= #text do
    local c = text:sub(i, i)
    if quote == "'" then
      if c == "'" then
        quote = nil
      end
    elseif c == "\\" then
      -- It escapes the next character; the last one joins the next line.
      if i == #text then
        return true
      end
      i = i + 1
    elseif quote == '"' then
      if c == '"' then
        quote = nil
      end
    elseif c == "'" or c == '"' then
      quote = c
    elseif c == "#" and (i == 1 or text:sub(i - 1, i - 1):match("%s")) then
      -- A comment runs to the end of its line.
      local nl = text:find("\n", i, true)
      if not nl then
        return false
      end
      i = nl
    end
    i = i + 1
  end
  return quote ~= nil
end

local function decodes(s)
  local ok, v = pcall(cjson.decode, s)
  return ok, v
end

-- Splits a block into steps: {cmd=, answer=(text of the JSON shown, or
-- nil), logs={...}, line=}.
local function steps_of(block, where)
  local steps, cur, answer_of = {}, nil, nil
  local n = 0
  for line in block:gmatch("([^\n]*)\n") do
    n = n + 1
    if cur and unfinished(cur.cmd) then
      cur.cmd = cur.cmd .. "\n" .. line
    elseif line:match("^%s*#%s*=>") then
      assert(#steps > 0, where .. ": an answer before any command, line " .. n)
      answer_of = steps[#steps]
      answer_of.answer = line:match("^%s*#%s*=>%s*(.-)%s*$")
      cur = nil
    elseif answer_of and not decodes(answer_of.answer)
        and line:match("^%s*#") then
      answer_of.answer = answer_of.answer .. "\n"
        .. line:match("^%s*#%s*(.-)%s*$")
    elseif line:match("^%s*#%s*logs:") then
      assert(#steps > 0, where .. ": a log line before any command")
      local logs = steps[#steps].logs
      logs[#logs + 1] = line:match("^%s*#%s*logs:%s*(.-)%s*$")
      answer_of, cur = nil, nil
    elseif line:match("^%s*#") or line:match("^%s*$") then
      answer_of, cur = nil, nil
    else
      answer_of = nil
      cur = { cmd = line, logs = {}, line = n }
      steps[#steps + 1] = cur
    end
  end
  for _, s in ipairs(steps) do
    if s.answer then
      local ok, v = decodes(s.answer)
      assert(ok, string.format("%s: the answer shown for\n%s\nis not JSON: %s",
        where, s.cmd, s.answer))
      s.expected = v
    end
  end
  return steps
end

local function is_timestamp(v)
  return type(v) == "string"
    and v:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d") ~= nil
end

-- Compares what the doc shows with what the server answered; returns nil,
-- or a sentence saying where they differ.
local function differ(shown, got, path, key)
  path = path or "the answer"
  if is_timestamp(shown) and is_timestamp(got) then
    return nil
  end
  if type(key) == "string" and key:match("_token$") and type(shown) == "string"
      and type(got) == "string" and #shown > 0 and #got > 0 then
    return nil
  end
  if type(shown) == "table" and type(got) == "table" then
    for k, v in pairs(shown) do
      local why = differ(v, got[k], path .. "." .. tostring(k), k)
      if why then
        return why
      end
    end
    for k, v in pairs(got) do
      if shown[k] == nil then
        return string.format("%s.%s: the doc does not show it (the server "
          .. "answered %s)", path, tostring(k), cjson.encode(v))
      end
    end
    return nil
  end
  if shown ~= got then
    local function show(v)
      if v == nil then
        return "nothing"
      end
      local ok, s = pcall(cjson.encode, v)
      return ok and s or tostring(v)
    end
    return string.format("%s: the doc shows %s, the server answered %s", path,
      show(shown), show(got))
  end
  return nil
end

-- A shell session: one `sh` reading commands from a FIFO, its output in a
-- file, each command followed by a marker so that its answer can be cut out.
local Shell = {}
Shell.__index = Shell

local function open_shell(dir, prelude)
  local self = setmetatable({ dir = dir, out = dir .. "/shell.out",
    err = dir .. "/shell.err", fifo = dir .. "/shell.in", n = 0, pos = 1 },
    Shell)
  assert(os.execute("mkfifo " .. shquote(self.fifo)))
  -- Opened read-write, the FIFO never blocks this side, and the shell sees
  -- its end when this side closes it.
  self.pipe = assert(io.open(self.fifo, "r+"))
  os.execute(string.format("cd %s && sh <%s >%s 2>%s & echo $! >%s",
    shquote(dir), shquote(self.fifo), shquote(self.out), shquote(self.err),
    shquote(dir .. "/shell.pid")))
  self.pid = tonumber((read_file(dir .. "/shell.pid") or ""):match("%d+"))
  self:run(prelude)
  return self
end

-- Types `cmd` and waits (at most timeout seconds) for it to finish; returns
-- what it printed, trimmed, or raises.
function Shell:run(cmd, timeout)
  self.n = self.n + 1
  local marker = string.format("@@done %d@@", self.n)
  self.pipe:write(cmd .. "\nprintf '\\n" .. marker .. "\\n'\n")
  self.pipe:flush()
  local text = helpers.wait_for(function()
    local all = read_file(self.out) or ""
    local at = all:find("\n" .. marker .. "\n", self.pos, true)
    if at then
      local out = all:sub(self.pos, at - 1)
      self.pos = at + #marker + 2
      return { out }
    end
  end, timeout or 20)
  if not text then
    error(string.format("the shell did not finish\n%s\nstdout:\n%s\nstderr:\n%s",
      cmd, (read_file(self.out) or ""):sub(self.pos),
      read_file(self.err) or ""), 2)
  end
  return (text[1]:gsub("^%s+", ""):gsub("%s+$", ""))
end

function Shell:stderr()
  return read_file(self.err) or ""
end

function Shell:close()
  if self.pipe then
    self.pipe:close()
    self.pipe = nil
  end
  if self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
  end
end

local shells = {}

-- Runs the steps of `blocks` (a list of ```sh texts) in one shell against a
-- fresh server on plugin.lua.example, checking each answer.
local function walk(blocks, where)
  assert(#blocks > 0, where .. ": no ```sh block")
  assert(not os.getenv("SENDGRID_API_KEY"), "unset SENDGRID_API_KEY: the "
    .. "walk-throughs run plugin.lua.example without SendGrid")
  local dir = helpers.tmpdir()
  local config = dir .. "/plugin.lua"
  helpers.write_file(config, assert(read_file("plugin.lua.example")))
  local server = helpers.start { dir = dir, config = config }
  local address = string.format("%s:%d", server.connect_host, server.port)
  local shell = open_shell(dir, "curl() { command curl --max-time 10 \"$@\"; }")
  shells[#shells + 1] = shell

  local token_seen = false
  for b, block in ipairs(blocks) do
    local steps = steps_of(block, where .. ", block " .. b)
    for _, step in ipairs(steps) do
      local cmd = step.cmd:gsub("localhost:9000", address)
      cmd = cmd:gsub("^(%s*export T=)%S+", function(prefix)
        token_seen = true
        return prefix .. shquote(helpers.ADMIN_TOKEN)
      end)
      local what = string.format("%s, block %d, line %d:\n%s", where, b,
        step.line, step.cmd)
      local out = shell:run(cmd)
      local ok, got = decodes(out)
      if step.expected ~= nil then
        assert(ok, what .. "\nanswered no JSON: " .. out .. "\n"
          .. shell:stderr())
        local why = differ(step.expected, got)
        -- What a command without a body reads may still be on its way (an
        -- event being delivered): it is asked again for a while.
        if why and not cmd:find(" %-d ") and not cmd:match("^%s*api ") then
          local deadline = socket.gettime() + 5
          while why and socket.gettime() < deadline do
            socket.sleep(0.05)
            out = shell:run(cmd)
            ok, got = decodes(out)
            -- Not `ok and differ(...) or ...`: a match (nil) would read as
            -- a failure.
            if ok then
              why = differ(step.expected, got)
            else
              why = "no JSON: " .. out
            end
          end
        end
        assert(not why, what .. "\n" .. tostring(why) .. "\nthe whole answer: "
          .. out)
      elseif ok and type(got) == "table" and type(got.type) == "string"
          and type(got.message) == "string" then
        error(what .. "\nanswered an error that the doc does not show: "
          .. out, 0)
      end
      for _, text in ipairs(step.logs) do
        assert(helpers.wait_stderr(server, text), what
          .. "\nthe server never logged: " .. text .. "\nits log:\n"
          .. server:stderr())
      end
    end
  end
  assert(token_seen, where .. ": no `export T=` sets the admin token")
  assert.equals("", shell:stderr(), where .. ": the commands wrote errors")
  return server
end

describe("the documentation's walk-throughs", function()
  after_each(function()
    for _, shell in ipairs(shells) do
      shell:close()
    end
    shells = {}
    helpers.cleanup()
  end)

  it("README.md's \"Trying it\" runs as written and answers as shown",
    function()
      local readme = assert(read_file("README.md"))
      -- The set-up is these two commands, exactly.
      local setup = sh_blocks(section(readme, "Set-up"))[1]
      assert.equals("make run", (setup or ""):match("^(make run)%s"))
      assert.truthy(setup:match("\nmake test%s"), setup)
      local n = 0
      for line in setup:gmatch("[^\n]+") do
        if not line:match("^%s*#") then
          n = n + 1
        end
      end
      assert.equals(2, n, setup)

      local blocks = sh_blocks(section(readme, "Trying it"))
      local shown = 0
      for _, block in ipairs(blocks) do
        for _, step in ipairs(steps_of(block, "README.md")) do
          if step.expected ~= nil then
            shown = shown + 1
          end
        end
      end
      assert.truthy(shown >= 3, "README.md's walk-through shows too few "
        .. "answers to check")
      walk(blocks, "README.md, \"Trying it\"")
    end)

  it("docs/multi-warehouse.md runs as written and answers as shown",
    function()
      local blocks = sh_blocks(assert(read_file("docs/multi-warehouse.md")))
      walk(blocks, "docs/multi-warehouse.md")
    end)
end)

-- docs/subscribers.md's per-shopper subscriber (a Mailgun-style handler,
-- `each = "subscriber"`), run as written against a fake mail API: only its
-- URL becomes the fake's. The fake refuses the first request with a 400 (a
-- bad address): that shopper's delivery is dead, every other shopper gets
-- exactly one mail, and nobody gets a second.
describe("docs/subscribers.md's per-shopper subscriber", function()
  local fake_http = require "spec.support.fake_http"
  after_each(function()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  it("sends each shopper one mail, and a refused address to nobody else",
    function()
      local doc = assert(read_file("docs/subscribers.md"))
      local part = section(doc,
        'One delivery per shopper: `each = "subscriber"`')
      local code = assert(part and part:match("\n```lua\n(.-\n)```"),
        "no lua block in the section")
      assert.truthy(code:find('each = "subscriber"', 1, true), code)
      local fake = fake_http.start { "--fail-first", 1, "--fail-status", 400 }
      local n
      code, n = code:gsub("https://api%.mailgun%.net", fake.url)
      assert.equals(1, n, "the example's URL moved: " .. code)
      local server = helpers.start {
        plugin = 'local restock = require "restock"\n' .. code,
        env = { MAILGUN_AUTH = "YXBpOmtleS0x" } }
      helpers.assert_status(helpers.admin(server, "POST", "/admin/variants",
        { id = "v", title = "Red shoes", inventory_quantity = 0 }), 200)
      local emails = { "a@example.com", "b@example.com", "c@example.com" }
      for _, e in ipairs(emails) do
        helpers.assert_status(helpers.request(server, "POST",
          "/restock-notifications/variants/v", { json = { email = e } }), 201)
      end
      helpers.assert_status(helpers.admin(server, "POST", "/admin/variants/v",
        { inventory_quantity = 5 }), 200)
      local reqs = fake:wait_requests(3)
      -- The event's deliveries settle: two delivered, one dead.
      local deliveries = helpers.wait_for(function()
        local r = helpers.admin(server, "GET",
          "/admin/events?name=restock-notification.restocked")
        local ev = r.json.events and r.json.events[1]
        if not ev or ev.status == "pending" then return nil end
        return ev.deliveries
      end)
      assert.truthy(deliveries, "the restocked event never settled")
      local by_status, dead = {}, nil
      for _, d in ipairs(deliveries) do
        assert.equals("mailgun", d.handler)
        by_status[d.status] = (by_status[d.status] or 0) + 1
        if d.status == "dead" then dead = d.subscriber end
      end
      assert.same({ delivered = 2, dead = 1 }, by_status)
      -- No second mail to anyone (nothing is pending: no retry is coming):
      -- three requests, one per shopper, each with the Basic auth and the
      -- form the example builds.
      reqs = fake:requests()
      assert.equals(3, #reqs)
      local seen = {}
      for _, r in ipairs(reqs) do
        assert.equals("Basic YXBpOmtleS0x", r.headers["Authorization"]
          or r.headers["authorization"])
        local to = r.body:match("^to=([^&]+)&")
        assert.truthy(to, r.body)
        assert.truthy(r.body:find("text=Red shoes", 1, true), r.body)
        assert.is_nil(seen[to], "a second mail to " .. to)
        seen[to] = true
      end
      for _, e in ipairs(emails) do
        assert.truthy(seen[e], "no mail to " .. e)
      end
      assert.truthy(seen[dead])
    end)
end)
