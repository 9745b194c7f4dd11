-- The harness every spec uses: it runs the real restockd binary in fresh
-- temporary directories, starts servers on port 0 in the background, talks
-- HTTP/1.1 to them over plain TCP, and fails a test when a server leaves a
-- sanitizer report on its stderr.
--
-- Specs call helpers.cleanup() in after_each (or in teardown, for a server
-- shared by a whole describe block; do not mix the two in one file). It
-- closes the client connections, stops every server still running with
-- SIGTERM and requires exit code 0, checks each server's stderr for
-- sanitizer reports, and removes the temporary directories.
local socket = require "socket"
local cjson = require "cjson"
local lfs = require "lfs"

local helpers = {}

-- JSON null as decoded by cjson, for comparisons in specs.
helpers.null = cjson.null

-- The backend the suite runs on (issue 14): spec/run.sh runs it twice, on
-- SQLite files and on PostgreSQL, setting RESTOCK_TEST_BACKEND=postgres and
-- RESTOCK_TEST_PG (the base URI of the throwaway cluster spec/pg.sh made)
-- for the second pass. On PostgreSQL every server a spec starts gets a
-- fresh schema of its own (named in the URI's search_path), dropped at
-- cleanup: CREATE DATABASE takes 0.3-0.5 s on a loaded 2-core machine,
-- CREATE SCHEMA a millisecond, and a schema of one's own is how restockd
-- shares a shop's database (docs/scaling.md).
helpers.backend = os.getenv("RESTOCK_TEST_BACKEND") or "sqlite"
helpers.pg = helpers.backend == "postgres"
helpers.PG_BASE = os.getenv("RESTOCK_TEST_PG")
assert(not helpers.pg or helpers.PG_BASE,
  "RESTOCK_TEST_BACKEND=postgres needs RESTOCK_TEST_PG, the cluster's URI")

-- The admin token every server gets unless a spec says otherwise.
helpers.ADMIN_TOKEN = "secret-token"

local DEFAULT_PLUGIN = 'local restock = require "restock"\nrestock.options {}\n'

-- Variables that would change what the binary does if they leaked in from
-- the environment the suite runs in. They are removed from every command
-- line unless the caller sets them on purpose.
local SCRUBBED_ENV = {
  "RESTOCK_DB", "RESTOCK_CONFIG", "HOST", "PORT", "RESTOCK_ADMIN_TOKEN",
  "RESTOCK_SECRET", "RESTOCK_IDLE_TIMEOUT", "RESTOCK_MAX_CONNECTIONS",
  "RESTOCK_HEADER_TIMEOUT", "RESTOCK_BODY_TIMEOUT",
}

-- Substrings that mean a sanitizer found a bug in the process.
local SANITIZER_MARKERS = {
  "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
  "SUMMARY: UndefinedBehaviorSanitizer", "WARNING: ThreadSanitizer",
}

-- Everything created since the last cleanup: temporary directories, servers,
-- client connections and PostgreSQL databases.
local registry = { dirs = {}, servers = {}, conns = {}, databases = {} }

local scratch -- A temporary directory for helpers.run's output files.
local counter = 0

local function now()
  return socket.gettime()
end

-- Quotes one word for /bin/sh.
local function shquote(s)
  s = tostring(s)
  if s:match("^[%w%./_:=@%%+,-]+$") then
    return s
  end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
helpers.shquote = shquote

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end
helpers.read_file = read_file

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end
helpers.write_file = write_file

local function next_name(prefix)
  counter = counter + 1
  return string.format("%s%d", prefix, counter)
end

-- Returns the first sanitizer marker found in text, or nil.
local function sanitizer_report(text)
  for _, marker in ipairs(SANITIZER_MARKERS) do
    if text and text:find(marker, 1, true) then
      return marker
    end
  end
  return nil
end
helpers.sanitizer_report = sanitizer_report

-- The binary under test, relative to the repository root (the cwd).
function helpers.binary()
  return os.getenv("RESTOCKD") or "build/asan/restockd"
end

-- True when the specs run against the ThreadSanitizer build (make tsan).
function helpers.under_tsan()
  return helpers.binary():find("tsan", 1, true) ~= nil
end

-- The binary as an absolute path, so that commands may run elsewhere.
local function binary_path()
  local bin = helpers.binary()
  if bin:sub(1, 1) ~= "/" then
    bin = lfs.currentdir() .. "/" .. bin
  end
  return bin
end

-- Makes a fresh temporary directory that cleanup() removes.
function helpers.tmpdir()
  local p = assert(io.popen("mktemp -d /tmp/restockd-spec.XXXXXX"))
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  registry.dirs[#registry.dirs + 1] = dir
  return dir
end

local function scratch_dir()
  if not scratch or not lfs.attributes(scratch) then
    scratch = helpers.tmpdir()
  end
  return scratch
end

-- Builds the "env -u ... K=V" prefix of a command. A value of false in env
-- leaves that variable unset; the sanitizer options are always present.
local function env_prefix(env)
  env = env or {}
  local words = { "env" }
  for _, name in ipairs(SCRUBBED_ENV) do
    if env[name] == nil or env[name] == false then
      words[#words + 1] = "-u " .. name
    end
  end
  local merged = {
    ASAN_OPTIONS = os.getenv("ASAN_OPTIONS")
      or "detect_leaks=1:abort_on_error=0:halt_on_error=1",
    UBSAN_OPTIONS = os.getenv("UBSAN_OPTIONS")
      or "print_stacktrace=1:halt_on_error=1",
  }
  for k, v in pairs(env) do
    merged[k] = v
  end
  local names = {}
  for k, v in pairs(merged) do
    if v ~= false then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  for _, k in ipairs(names) do
    words[#words + 1] = shquote(k .. "=" .. tostring(merged[k]))
  end
  return table.concat(words, " ")
end

local function command_line(args)
  local words = { shquote(binary_path()) }
  for _, a in ipairs(args) do
    words[#words + 1] = shquote(a)
  end
  return table.concat(words, " ")
end

-- Runs the binary to completion with the given argument list and
-- environment additions, and returns its exit code, stdout and stderr.
-- opts.cwd runs it in another directory; opts.timeout (seconds, 30 by
-- default) kills it if it has not finished by then, which is an error.
-- A sanitizer report on stderr is an error too.
function helpers.run(args, env, opts)
  opts = opts or {}
  local dir = scratch_dir()
  local name = next_name("run")
  local out, err = dir .. "/" .. name .. ".out", dir .. "/" .. name .. ".err"
  local cmd = string.format("cd %s && timeout -k 2 %d %s %s <%s >%s 2>%s",
    shquote(opts.cwd or lfs.currentdir()), opts.timeout or 30,
    env_prefix(env), command_line(args), "/dev/null", shquote(out),
    shquote(err))
  local ok, how, code = os.execute(cmd)
  local rc
  if how == "exit" then
    rc = code
  else
    rc = 128 + (code or 0)
  end
  local stdout, stderr = read_file(out) or "", read_file(err) or ""
  if rc == 124 then
    error(string.format("restockd %s did not finish in time\nstderr:\n%s",
      table.concat(args, " "), stderr), 2)
  end
  local marker = sanitizer_report(stderr)
  if marker then
    error(string.format("restockd %s: %s\nstderr:\n%s",
      table.concat(args, " "), marker, stderr), 2)
  end
  return rc, stdout, stderr
end

-- PostgreSQL ------------------------------------------------------------------

-- Runs SQL with psql on database `db` (a URI) and returns its output (rows
-- as unaligned text, fields separated by |), or raises with psql's error.
function helpers.psql(db, sql)
  local dir = scratch_dir()
  local name = next_name("psql")
  local sql_path = dir .. "/" .. name .. ".sql"
  write_file(sql_path, sql)
  local p = assert(io.popen(string.format(
    "psql -X -q -A -t -v ON_ERROR_STOP=1 %s -f %s 2>&1; echo \"rc=$?\"",
    shquote(db), shquote(sql_path))))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  out = out:gsub("rc=%d+%s*$", "")
  if rc ~= 0 then
    error("psql failed: " .. out, 2)
  end
  return out
end

-- Runs one query on a server's database, whichever the backend, and
-- returns its output trimmed (rows one per line, fields separated by |),
-- or nil on SQLite when the sqlite3 shell is not installed. The query must
-- mean the same in both dialects.
function helpers.sql(db, query)
  if helpers.pg then
    return (helpers.psql(db, query):gsub("%s+$", ""))
  end
  if not os.execute("command -v sqlite3 >/dev/null 2>&1") then
    return nil
  end
  local p = assert(io.popen(string.format("sqlite3 %s %s 2>&1",
    shquote(db), shquote(query))))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local schema_prefix = string.format("spec_%d_%d", os.time(),
  math.random(1e6))
local schema_counter = 0
-- Schemas made ahead, a batch per psql run.
local schema_pool = {}

-- The URI of schema `name` of the suite's database.
function helpers.pg_uri(name)
  local sep = helpers.PG_BASE:find("?", 1, true) and "&" or "?"
  return helpers.PG_BASE .. sep .. "options=-csearch_path%3D" .. name
end

-- The schema given to each directory, as a SQLite file lives in one: a
-- server started again on the same directory finds the same database.
local dir_db = {}

-- A database for a server to be started on: on SQLite the file
-- dir/restock.db, on PostgreSQL the schema of dir, a fresh, empty one the
-- first time (dropped at cleanup), named in the URI returned.
function helpers.fresh_db(dir)
  dir = dir or helpers.tmpdir()
  if not helpers.pg then
    return dir .. "/restock.db"
  end
  if dir_db[dir] then
    return dir_db[dir]
  end
  if #schema_pool == 0 then
    local sql = {}
    for _ = 1, 16 do
      schema_counter = schema_counter + 1
      local name = string.format("%s_%d", schema_prefix, schema_counter)
      schema_pool[#schema_pool + 1] = name
      sql[#sql + 1] = string.format('CREATE SCHEMA "%s";', name)
    end
    helpers.psql(helpers.PG_BASE, table.concat(sql, "\n"))
  end
  local name = table.remove(schema_pool, 1)
  registry.databases[#registry.databases + 1] = name
  dir_db[dir] = helpers.pg_uri(name)
  return dir_db[dir]
end

-- Marks the test running at stack level `level` pending: busted's
-- pending(), found in the test function's environment, ends it.
local function mark_pending(level, why)
  local f = debug.getinfo(level + 1, "f").func
  for i = 1, 255 do
    local name, env = debug.getupvalue(f, i)
    if not name then
      break
    end
    if name == "_ENV" and type(env) == "table" and env.pending then
      env.pending(why)
    end
  end
end

-- Marks the running test pending on PostgreSQL, with why it holds for
-- SQLite only: `if helpers.sqlite_only("...") then return end`.
function helpers.sqlite_only(why)
  if not helpers.pg then
    return false
  end
  mark_pending(2, "SQLite only: " .. why)
  return true
end

-- The same the other way: `if helpers.pg_only("...") then return end`.
function helpers.pg_only(why)
  if helpers.pg then
    return false
  end
  mark_pending(2, "PostgreSQL only: " .. why)
  return true
end

-- Polls fn until it returns a truthy value, which is returned, or until
-- timeout seconds (5 by default) have passed, which returns nil.
function helpers.wait_for(fn, timeout)
  local deadline = now() + (timeout or 5)
  while true do
    local v = fn()
    if v then
      return v
    end
    if now() > deadline then
      return nil
    end
    socket.sleep(0.01)
  end
end

-- Returns a TCP port that was free a moment ago.
function helpers.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Server objects -----------------------------------------------------------

local Server = {}
Server.__index = Server

-- The server's stderr so far.
function Server:stderr()
  return read_file(self.err_path) or ""
end

-- The server's stdout so far.
function Server:stdout()
  return read_file(self.out_path) or ""
end

-- The exit code if the process has ended, else nil.
function Server:exit_code()
  if self.rc then
    return self.rc
  end
  local s = read_file(self.rc_path)
  local rc = s and tonumber(s:match("%d+"))
  if rc then
    self.rc = rc
    self.exited = true
  end
  return rc
end

-- Checks a finished server's stderr for sanitizer reports, once.
function Server:check_sanitizers()
  if self.sanitizers_checked then
    return
  end
  self.sanitizers_checked = true
  local stderr = self:stderr()
  local marker = sanitizer_report(stderr)
  if marker then
    error(string.format("restockd (pid %s) reported %s\nstderr:\n%s",
      tostring(self.pid), marker, stderr), 0)
  end
end

-- Waits up to timeout seconds (15 by default) for the process to end and
-- returns its exit code (128 + signal number when a signal ended it), or
-- nil if it is still running. Once it has ended, a sanitizer report on its
-- stderr raises an error.
function Server:wait_exit(timeout)
  local rc = helpers.wait_for(function()
    return self:exit_code()
  end, timeout or 15)
  if rc then
    self:check_sanitizers()
  end
  return rc
end

local function signal(pid, sig)
  os.execute(string.format("kill -%s %d 2>/dev/null", sig, pid))
end

-- Sends a signal (TERM by default) and waits for the exit code, which it
-- returns. The server counts as stopped by the test: cleanup() does not
-- require exit code 0 of it.
function Server:stop(sig, timeout)
  self.stopped_by_test = true
  if not self:exit_code() then
    signal(self.pid, sig or "TERM")
  end
  local rc = self:wait_exit(timeout or 15)
  if not rc then
    signal(self.pid, "KILL")
    helpers.wait_for(function() return self:exit_code() end, 5)
    error(string.format("restockd (pid %d) did not exit after SIG%s\n"
      .. "stderr:\n%s", self.pid, sig or "TERM", self:stderr()), 2)
  end
  return rc
end

-- Sends a signal without waiting for anything.
function Server:signal(sig)
  signal(self.pid, sig)
end

-- Kills the server with SIGKILL and waits until it is gone.
function Server:kill9()
  self.stopped_by_test = true
  self.sanitizers_checked = true -- A killed process writes no report.
  signal(self.pid, "KILL")
  local rc = helpers.wait_for(function() return self:exit_code() end, 10)
  assert(rc, "restockd did not die of SIGKILL")
  return rc
end

-- Starts a server and waits for its listening line. opts (all optional):
--   plugin      the plugin.lua text (a script with empty options by default)
--   config      the path of an existing plugin script to use instead
--   dir         the directory for its files (a fresh one by default)
--   db          the database path (DIR/restock.db by default)
--   no_migrate  do not run `migrations run` first
--   env         environment additions; RESTOCK_ADMIN_TOKEN is secret-token
--               unless set here (false leaves it unset)
--   port, host  --port (0 by default; false omits it) and --host
--   args        more arguments for `start`
--   timeout     seconds to wait for the listening line (10 by default)
-- Returns a server object with port, host, pid, db, dir and the methods
-- above. A server that exits before listening raises an error.
function helpers.start(opts)
  opts = opts or {}
  local dir = opts.dir or helpers.tmpdir()
  local db = opts.db or helpers.fresh_db(dir)
  local name = next_name("server")
  local plugin_path = opts.config or (dir .. "/" .. name .. ".plugin.lua")
  if not opts.config then
    write_file(plugin_path, opts.plugin or DEFAULT_PLUGIN)
  end

  local env = { RESTOCK_ADMIN_TOKEN = helpers.ADMIN_TOKEN }
  for k, v in pairs(opts.env or {}) do
    env[k] = v
  end

  if not opts.no_migrate then
    local rc, _, stderr = helpers.run({ "migrations", "run", "--db", db }, env)
    if rc ~= 0 then
      error(string.format("migrations run exited %d\nstderr:\n%s", rc,
        stderr), 2)
    end
  end

  local args = { "start", "--db", db, "--config", plugin_path }
  if opts.port ~= false then
    args[#args + 1] = "--port"
    args[#args + 1] = tostring(opts.port or 0)
  end
  if opts.host then
    args[#args + 1] = "--host"
    args[#args + 1] = opts.host
  end
  for _, a in ipairs(opts.args or {}) do
    args[#args + 1] = a
  end

  local server = setmetatable({
    dir = dir,
    db = db,
    plugin_path = plugin_path,
    out_path = dir .. "/" .. name .. ".stdout",
    err_path = dir .. "/" .. name .. ".stderr",
    pid_path = dir .. "/" .. name .. ".pid",
    rc_path = dir .. "/" .. name .. ".rc",
  }, Server)

  -- The subshell records the server's pid, waits for it and records its
  -- exit status, so no posix library is needed. Its own standard streams
  -- are detached so that it never holds the suite's output pipe open.
  local inner = string.format(
    "%s %s >%s 2>%s </dev/null & echo $! >%s; wait $!; echo $? >%s",
    env_prefix(env), command_line(args), shquote(server.out_path),
    shquote(server.err_path), shquote(server.pid_path),
    shquote(server.rc_path))
  os.execute(string.format("( %s ) </dev/null >/dev/null 2>&1 &", inner))

  local pid = helpers.wait_for(function()
    local s = read_file(server.pid_path)
    return s and tonumber(s:match("%d+"))
  end, 5)
  assert(pid, "the background shell did not report a pid")
  server.pid = pid
  registry.servers[#registry.servers + 1] = server

  local deadline = now() + (opts.timeout or 10)
  while true do
    local host, port = server:stdout():match(
      "restockd listening on http://([^%s/]+):(%d+)")
    if host then
      server.host = host
      server.port = tonumber(port)
      break
    end
    if server:exit_code() then
      server.stopped_by_test = true
      local stderr = server:stderr()
      server.sanitizers_checked = true
      error(string.format("restockd start exited %d before listening\n"
        .. "stdout:\n%s\nstderr:\n%s", server.rc, server:stdout(), stderr), 2)
    end
    if now() > deadline then
      error(string.format("restockd start printed no listening line in "
        .. "time\nstdout:\n%s\nstderr:\n%s", server:stdout(),
        server:stderr()), 2)
    end
    socket.sleep(0.01)
  end
  -- Clients connect to the loopback address when the server listens on all.
  server.connect_host = server.host
  if server.host == "0.0.0.0" then
    server.connect_host = "127.0.0.1"
  end
  return server
end

-- HTTP client ----------------------------------------------------------------

local CLIENT_TIMEOUT = 5

-- A connection reads through its own buffer so that closed() may look ahead
-- without losing bytes.
local Conn = {}
Conn.__index = Conn

local function new_conn(server, timeout)
  local sock = socket.tcp()
  sock:settimeout(timeout or CLIENT_TIMEOUT)
  local ok, err = sock:connect(server.connect_host or server.host,
    server.port)
  if not ok then
    sock:close()
    return nil, err
  end
  local conn = setmetatable({ sock = sock, server = server, buf = "",
    timeout = timeout or CLIENT_TIMEOUT }, Conn)
  registry.conns[#registry.conns + 1] = conn
  return conn
end

-- Reads whatever bytes arrive next into the buffer, waiting at most timeout
-- seconds (the connection's timeout by default). Returns true, or nil and
-- the error ("closed", "timeout", ...). A plain receive(n) would wait for
-- all n bytes, so this waits with select and then takes what is there.
function Conn:fill(timeout)
  local deadline = now() + (timeout or self.timeout)
  while true do
    if not self.sock:dirty() then
      local left = math.max(deadline - now(), 0)
      local readable = socket.select({ self.sock }, nil, left)
      if #readable == 0 and now() >= deadline then
        return nil, "timeout"
      end
    end
    self.sock:settimeout(0)
    local data, err, partial = self.sock:receive(65536)
    data = data or partial
    if data and #data > 0 then
      self.buf = self.buf .. data
      return true
    end
    if err ~= "timeout" then
      return nil, err
    end
    if now() >= deadline then
      return nil, "timeout"
    end
  end
end

-- Reads one line, without its CRLF.
function Conn:read_line()
  while true do
    local i = self.buf:find("\n", 1, true)
    if i then
      local line = self.buf:sub(1, i - 1):gsub("\r$", "")
      self.buf = self.buf:sub(i + 1)
      return line
    end
    local ok, err = self:fill()
    if not ok then
      return nil, err
    end
  end
end

-- Reads exactly n bytes.
function Conn:read_bytes(n)
  while #self.buf < n do
    local ok, err = self:fill()
    if not ok then
      return nil, err
    end
  end
  local s = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return s
end

-- Reads until the peer closes the connection.
function Conn:read_to_eof()
  while true do
    local ok, err = self:fill()
    if not ok then
      if err == "closed" then
        local s = self.buf
        self.buf = ""
        return s
      end
      return nil, err
    end
  end
end

-- Sends bytes as they are. Returns true, or nil and the error.
function Conn:send_raw(bytes)
  self.sock:settimeout(self.timeout)
  local i, err = self.sock:send(bytes)
  if not i then
    return nil, err
  end
  return true
end

local function build_request(server, method, path, opts, keep_alive)
  opts = opts or {}
  local headers = {}
  local have = {}
  for k, v in pairs(opts.headers or {}) do
    headers[#headers + 1] = { k, v }
    have[k:lower()] = true
  end
  local body = opts.body
  if opts.json ~= nil then
    body = cjson.encode(opts.json)
    if not have["content-type"] then
      headers[#headers + 1] = { "Content-Type", "application/json" }
    end
  end
  if not have["host"] then
    table.insert(headers, 1, { "Host", string.format("%s:%d",
      server.connect_host or server.host, server.port) })
  end
  if not have["content-length"] and (body
      or (method ~= "GET" and method ~= "HEAD")) then
    headers[#headers + 1] = { "Content-Length", tostring(#(body or "")) }
  end
  if not keep_alive and not have["connection"] then
    headers[#headers + 1] = { "Connection", "close" }
  end
  local lines = { string.format("%s %s HTTP/1.1", method, path) }
  for _, h in ipairs(headers) do
    lines[#lines + 1] = h[1] .. ": " .. h[2]
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end
helpers.build_request = build_request

local function decode_json(body)
  if not body or body == "" then
    return nil
  end
  local ok, v = pcall(cjson.decode, body)
  if ok then
    return v
  end
  return nil
end

-- Reads one response. Returns {status=, reason=, version=, headers=,
-- body=, json=}, or nil and the error ("closed", "timeout", ...).
-- opts.method = "HEAD" reads no body.
function Conn:read_response(opts)
  opts = opts or {}
  local line, err = self:read_line()
  if not line then
    return nil, err
  end
  local version, status, reason = line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
  if not status then
    return nil, "bad status line: " .. line
  end
  local res = { version = version, status = tonumber(status),
    reason = reason, headers = {} }
  while true do
    local h
    h, err = self:read_line()
    if not h then
      return nil, err
    end
    if h == "" then
      break
    end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    if not name then
      return nil, "bad header line: " .. h
    end
    name = name:lower()
    if res.headers[name] then
      res.headers[name] = res.headers[name] .. ", " .. value
    else
      res.headers[name] = value
    end
  end

  local body
  local te = (res.headers["transfer-encoding"] or ""):lower()
  if opts.method == "HEAD" or res.status < 200 or res.status == 204
      or res.status == 304 then
    body = ""
  elseif te:find("chunked", 1, true) then
    local parts = {}
    while true do
      local size_line
      size_line, err = self:read_line()
      if not size_line then
        return nil, err
      end
      local size = tonumber(size_line:match("^%x+"), 16)
      if not size then
        return nil, "bad chunk size: " .. size_line
      end
      if size == 0 then
        repeat
          local trailer
          trailer, err = self:read_line()
          if not trailer then
            return nil, err
          end
        until trailer == ""
        break
      end
      local chunk
      chunk, err = self:read_bytes(size)
      if not chunk then
        return nil, err
      end
      parts[#parts + 1] = chunk
      self:read_line()
    end
    body = table.concat(parts)
  elseif res.headers["content-length"] then
    local n = tonumber(res.headers["content-length"])
    if not n then
      return nil, "bad content-length: " .. res.headers["content-length"]
    end
    body, err = self:read_bytes(n)
    if not body then
      return nil, err
    end
  else
    body, err = self:read_to_eof()
    if not body then
      return nil, err
    end
  end
  res.body = body
  res.json = decode_json(body)
  return res
end

-- Sends one request on this connection without reading the answer.
function Conn:send_request(method, path, opts)
  return self:send_raw(build_request(self.server, method, path, opts,
    not (opts and opts.close)))
end

-- Sends one keep-alive request and reads its response. A transport error
-- raises, naming the request.
function Conn:request(method, path, opts)
  local ok, err = self:send_request(method, path, opts)
  if not ok then
    error(string.format("%s %s: send failed: %s", method, path, err), 2)
  end
  local res
  res, err = self:read_response({ method = method })
  if not res then
    error(string.format("%s %s: no response: %s", method, path, err), 2)
  end
  return res
end

-- True when the server has closed the connection (a read reports the end
-- or a reset) within timeout seconds (0.5 by default); false when the
-- connection stays open that long. Bytes that arrive meanwhile are kept
-- for the next read.
function Conn:closed(timeout)
  local deadline = now() + (timeout or 0.5)
  while true do
    local left = deadline - now()
    if left < 0 then
      left = 0
    end
    local ok, err = self:fill(left)
    if not ok then
      if err ~= "timeout" then
        return true
      end
      if now() >= deadline then
        return false
      end
    end
  end
end

function Conn:close()
  if not self.is_closed then
    self.is_closed = true
    self.sock:close()
  end
end

-- Opens a keep-alive connection to the server; an error raises.
function helpers.connect(server, timeout)
  local conn, err = new_conn(server, timeout)
  if not conn then
    error(string.format("connect to %s:%d failed: %s", server.host,
      server.port, err), 2)
  end
  return conn
end

-- Opens a connection, or returns nil and the error.
function helpers.try_connect(server, timeout)
  return new_conn(server, timeout)
end

-- Sends one request on a new connection (with Connection: close) and
-- returns the response {status=, headers=, body=, json=}. opts: headers
-- (name -> value), body (a string), json (a value to encode; sets
-- Content-Type: application/json). A transport error raises.
function helpers.request(server, method, path, opts)
  local conn = helpers.connect(server)
  local ok, err = conn:send_raw(build_request(server, method, path, opts,
    false))
  if not ok then
    conn:close()
    error(string.format("%s %s: send failed: %s", method, path, err), 2)
  end
  local res
  res, err = conn:read_response({ method = method })
  conn:close()
  if not res then
    error(string.format("%s %s: no response: %s", method, path, err), 2)
  end
  return res
end

-- An admin request with the bearer token. body, if given, is sent as JSON
-- (a table) or as it is (a string, still labelled application/json).
function helpers.admin(server, method, path, body, headers)
  local opts = {
    headers = { Authorization = "Bearer " .. helpers.ADMIN_TOKEN },
  }
  for k, v in pairs(headers or {}) do
    opts.headers[k] = v
  end
  if type(body) == "string" then
    opts.body = body
    opts.headers["Content-Type"] = opts.headers["Content-Type"]
      or "application/json"
  elseif body ~= nil then
    opts.json = body
  end
  return helpers.request(server, method, path, opts)
end

-- Percent-encodes a string for a path segment or a query value.
function helpers.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

-- Builds "?a=1&b=2" from a table, in sorted key order.
function helpers.query(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = helpers.urlencode(k) .. "=" .. helpers.urlencode(t[k])
  end
  if #parts == 0 then
    return ""
  end
  return "?" .. table.concat(parts, "&")
end

-- Describes a response for assertion messages.
function helpers.describe(res)
  if not res then
    return "no response"
  end
  return string.format("%d %s", res.status, res.body or "")
end

-- Asserts that res is an error answer: the status, a JSON body with a
-- string type and message, the given type and, if given, the exact
-- message.
function helpers.assert_error(res, status, err_type, message)
  local d = helpers.describe(res)
  assert(res, "expected a response, got none")
  assert(res.status == status, string.format("expected status %d, got %s",
    status, d))
  assert(type(res.json) == "table", "expected a JSON error body, got " .. d)
  assert(type(res.json.type) == "string",
    "expected a string \"type\" in the error body, got " .. d)
  assert(type(res.json.message) == "string",
    "expected a string \"message\" in the error body, got " .. d)
  if err_type then
    assert(res.json.type == err_type, string.format(
      "expected error type %s, got %s", err_type, d))
  end
  if message then
    assert(res.json.message == message, string.format(
      "expected message %q, got %s", message, d))
  end
  local ct = res.headers["content-type"] or ""
  assert(ct:find("application/json", 1, true),
    "expected Content-Type application/json, got " .. ct)
end

-- Asserts the status of a response, showing the body when it differs.
function helpers.assert_status(res, status)
  assert(res, "expected a response, got none")
  assert(res.status == status, string.format("expected status %d, got %s",
    status, helpers.describe(res)))
  return res
end

-- Engine helpers -------------------------------------------------------------

-- Lua source for the top of a test plugin: it requires restock and defines
-- record(tag, value), which appends one JSON line {"tag":..., "data":...}
-- to path, so that a spec can see what the plugin's handlers received.
function helpers.recorder_plugin(path)
  return string.format([[
local restock = require "restock"
local RECORD_PATH = %q
local function record(tag, value)
  local f = assert(io.open(RECORD_PATH, "a"))
  f:write(restock.json.encode({ tag = tag, data = value }), "\n")
  f:close()
end
]], path)
end

-- The records a recorder plugin wrote to path, in order, each decoded
-- ({tag=, data=}); only those with the given tag if tag is given. A line
-- that is not (yet) complete JSON is skipped.
function helpers.read_records(path, tag)
  local text = read_file(path) or ""
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, line)
    if ok and type(v) == "table" and (tag == nil or v.tag == tag) then
      out[#out + 1] = v
    end
  end
  return out
end

-- Polls path until it holds at least n records (with tag, if given) and
-- returns them all, or returns nil after timeout seconds (5 by default).
function helpers.wait_records(path, tag, n, timeout)
  return helpers.wait_for(function()
    local recs = helpers.read_records(path, tag)
    if #recs >= n then
      return recs
    end
  end, timeout)
end

-- GET /admin/events with a query table; asserts 200 and returns the JSON.
function helpers.events(server, query)
  local res = helpers.admin(server, "GET", "/admin/events"
    .. helpers.query(query or {}))
  helpers.assert_status(res, 200)
  return res.json
end

-- Polls the server's stderr until it contains text (plain) and returns
-- the stderr, or nil after timeout seconds (5 by default).
-- The number of times text occurs in s (plain text, not a pattern).
function helpers.occurrences(s, text)
  local n, i = 0, 1
  while true do
    local j = s:find(text, i, true)
    if not j then
      return n
    end
    n, i = n + 1, j + #text
  end
end

function helpers.wait_stderr(server, text, timeout)
  return helpers.wait_for(function()
    local s = server:stderr()
    if s:find(text, 1, true) then
      return s
    end
  end, timeout)
end

-- Cleanup ------------------------------------------------------------------

-- Closes every connection, stops every server still running (SIGTERM; exit
-- code 0 required unless the test stopped or killed it itself), checks
-- every server's stderr for sanitizer reports, removes the temporary
-- directories, and then raises one error listing every problem found.
function helpers.cleanup()
  local problems = {}
  for _, conn in ipairs(registry.conns) do
    conn:close()
  end
  registry.conns = {}

  for _, server in ipairs(registry.servers) do
    local ok, err = pcall(function()
      if not server:exit_code() then
        local rc = server:stop("TERM")
        if rc ~= 0 then
          error(string.format("restockd (pid %d) exited %d on SIGTERM at "
            .. "cleanup\nstderr:\n%s", server.pid, rc, server:stderr()), 0)
        end
      elseif not server.stopped_by_test and server.rc ~= 0 then
        error(string.format("restockd (pid %d) exited %d on its own\n"
          .. "stderr:\n%s", server.pid, server.rc, server:stderr()), 0)
      end
      server:check_sanitizers()
    end)
    if not ok then
      problems[#problems + 1] = tostring(err)
    end
  end
  registry.servers = {}

  if #registry.databases > 0 then
    local drops = { "SET lock_timeout = '10s';" }
    for _, name in ipairs(registry.databases) do
      drops[#drops + 1] = string.format(
        'DROP SCHEMA IF EXISTS "%s" CASCADE;', name)
    end
    local ok, err = pcall(helpers.psql, helpers.PG_BASE,
      table.concat(drops, "\n"))
    if not ok then
      problems[#problems + 1] = tostring(err)
    end
  end
  registry.databases = {}
  dir_db = {}

  for _, dir in ipairs(registry.dirs) do
    if dir:match("^/tmp/restockd%-spec%.") then
      os.execute("rm -rf " .. shquote(dir))
    end
  end
  registry.dirs = {}
  scratch = nil

  if #problems > 0 then
    error(table.concat(problems, "\n\n"), 0)
  end
end

-- If the suite dies with servers still running, they are killed when the
-- Lua state closes rather than left behind.
helpers._reaper = setmetatable({}, { __gc = function()
  for _, server in ipairs(registry.servers) do
    if server.pid and not server:exit_code() then
      os.execute(string.format("kill -KILL %d 2>/dev/null", server.pid))
    end
  end
end })

return helpers
