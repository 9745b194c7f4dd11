-- `restockd migrations run` and `migrations status`, the database setting
-- (flag, then RESTOCK_DB) and `start` refusing an unmigrated database.
local helpers = require "spec.support.helpers"

-- The lines of a command's output, without empty ones.
local function lines(text)
  local t = {}
  for line in text:gmatch("[^\n]+") do
    t[#t + 1] = line
  end
  return t
end

-- Whether some line of text starts with prefix.
local function has_line(text, prefix)
  for _, line in ipairs(lines(text)) do
    if line:sub(1, #prefix) == prefix then
      return true
    end
  end
  return false
end

describe("migrations", function()
  after_each(helpers.cleanup)

  local db
  before_each(function()
    db = helpers.fresh_db(helpers.tmpdir())
  end)

  it("run applies the pending migrations and prints each one", function()
    local rc, stdout, stderr = helpers.run({ "migrations", "run", "--db", db })
    assert.equals(0, rc, stderr)
    assert.truthy(has_line(stdout, "applied 001_initial"), stdout)
    for _, line in ipairs(lines(stdout)) do
      assert.truthy(line:match("^applied %d%d%d_[%w_]+"),
        "unexpected line: " .. line)
    end
  end)

  it("run a second time applies nothing", function()
    assert.equals(0, (helpers.run({ "migrations", "run", "--db", db })))
    local rc, stdout, stderr = helpers.run({ "migrations", "run", "--db", db })
    assert.equals(0, rc, stderr)
    assert.truthy(stdout:find("no pending migrations", 1, true), stdout)
    assert.is_nil(stdout:find("applied", 1, true))
  end)

  it("status lists the migrations as pending before run", function()
    local rc, stdout, stderr = helpers.run({ "migrations", "status", "--db",
      db })
    assert.equals(0, rc, stderr)
    assert.truthy(has_line(stdout, "pending 001_initial"), stdout)
    assert.is_false(has_line(stdout, "applied"))
  end)

  it("status lists the migrations as applied after run", function()
    assert.equals(0, (helpers.run({ "migrations", "run", "--db", db })))
    local rc, stdout, stderr = helpers.run({ "migrations", "status", "--db",
      db })
    assert.equals(0, rc, stderr)
    assert.truthy(has_line(stdout, "applied 001_initial"), stdout)
    assert.is_false(has_line(stdout, "pending"))
  end)

  it("uses RESTOCK_DB when --db is absent", function()
    local rc, stdout, stderr = helpers.run({ "migrations", "run" },
      { RESTOCK_DB = db })
    assert.equals(0, rc, stderr)
    assert.truthy(has_line(stdout, "applied 001_initial"), stdout)
    local _, status = helpers.run({ "migrations", "status", "--db", db })
    assert.truthy(has_line(status, "applied 001_initial"), status)
  end)

  it("prefers --db to RESTOCK_DB", function()
    local other = helpers.fresh_db(helpers.tmpdir())
    local rc, _, stderr = helpers.run({ "migrations", "run", "--db", db },
      { RESTOCK_DB = other })
    assert.equals(0, rc, stderr)
    local _, flagged = helpers.run({ "migrations", "status", "--db", db })
    assert.truthy(has_line(flagged, "applied 001_initial"), flagged)
    local _, unflagged = helpers.run({ "migrations", "status", "--db", other })
    assert.truthy(has_line(unflagged, "pending 001_initial"), unflagged)
  end)

  it("defaults to ./restock.db", function()
    if helpers.sqlite_only("the default database is a SQLite file") then
      return
    end
    local dir = helpers.tmpdir()
    local rc, stdout, stderr = helpers.run({ "migrations", "run" }, nil,
      { cwd = dir })
    assert.equals(0, rc, stderr)
    assert.truthy(has_line(stdout, "applied 001_initial"), stdout)
    assert.truthy(helpers.read_file(dir .. "/restock.db"),
      "expected ./restock.db to exist")
  end)

  it("start on an unmigrated database exits 2 naming the command", function()
    local dir = helpers.tmpdir()
    local config = dir .. "/plugin.lua"
    helpers.write_file(config, 'require "restock".options {}\n')
    local rc, stdout, stderr = helpers.run({ "start", "--db", db, "--config",
      config, "--port", "0" }, nil, { timeout = 10 })
    assert.equals(2, rc)
    assert.truthy(stderr:find("restockd migrations run", 1, true), stderr)
    assert.is_nil(stdout:find("listening", 1, true))
  end)

  it("start works once the migrations have run", function()
    local server = helpers.start({ db = db })
    assert.equals(200, helpers.request(server, "GET", "/health").status)
  end)
end)
