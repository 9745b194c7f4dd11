-- restock.on_subscribe (contract section 3): a plugin's hook that may
-- refuse a subscription with a message, wait on restock.http (a captcha's
-- siteverify, here a fake one), and fails closed with 503 on an error or
-- after 5 s.
local helpers = require "spec.support.helpers"
local fake_http = require "spec.support.fake_http"
local socket = require "socket"

local admin = helpers.admin

local function variant(server, id)
  helpers.assert_status(admin(server, "POST", "/admin/variants",
    { id = id, inventory_quantity = 0 }), 200)
end

local function subscribe(server, body, headers)
  return helpers.request(server, "POST", "/restock-notifications/variants/v",
    { json = body, headers = headers })
end

local function active(server)
  local res = admin(server, "GET", "/admin/restock-notifications")
  local t = {}
  for i, n in ipairs(res.json.restock_notifications) do
    t[i] = n.email
  end
  return t
end

describe("restock.on_subscribe", function()
  after_each(function()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  it("sees the request and may refuse with a message", function()
    local dir = helpers.tmpdir()
    local rec = dir .. "/records.jsonl"
    local server = helpers.start { dir = dir,
      plugin = helpers.recorder_plugin(rec) .. [[
restock.on_subscribe(function(s)
  record("hook", s)
  if s.email:find("^spam") then
    return false, "No spam, " .. s.email
  end
  if s.headers["x-no"] then return false end
  return true
end)
]] }
    variant(server, "v")
    local res = subscribe(server, { email = "Ann@Example.com", quantity = 2,
      locale = "de" }, { ["X-Captcha-Token"] = "tok-1" })
    helpers.assert_status(res, 201)
    local seen = helpers.wait_records(rec, "hook", 1)[1].data
    assert.equals("v", seen.variant_id)
    assert.equals("ann@example.com", seen.email)
    assert.equals(2, seen.quantity)
    assert.equals("de", seen.locale)
    assert.equals("127.0.0.1", seen.remote_addr)
    assert.equals("tok-1", seen.headers["x-captcha-token"])
    assert.truthy(seen.headers["content-type"])

    res = subscribe(server, { email = "spam@example.com" })
    helpers.assert_error(res, 400, "not_allowed",
      "No spam, spam@example.com")
    res = subscribe(server, { email = "b@example.com" }, { ["X-No"] = "1" })
    helpers.assert_error(res, 400, "not_allowed")
    assert.same({ "ann@example.com" }, active(server))
    -- A refusal is an answer, not a failure: nothing is logged as one.
    assert.falsy(server:stderr():find("on_subscribe failed", 1, true))
  end)

  it("waits on a captcha's siteverify without holding the server",
    function()
      local ok_fake = fake_http.start { "--status", "200", "--body",
        '{"success": true}', "--delay", "0.5" }
      local no_fake = fake_http.start { "--status", "200", "--body",
        '{"success": false, "error-codes": ["invalid-input-response"]}' }
      local server = helpers.start { plugin = string.format([[
local restock = require "restock"
restock.on_subscribe(function(s)
  local token = s.headers["x-captcha-token"]
  if not token then return false, "Please complete the captcha" end
  local url = token == "good" and %q or %q
  local res, err = restock.http.request {
    url = url .. "/siteverify", method = "POST",
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
    body = "secret=s&response=" .. token .. "&remoteip=" .. s.remote_addr,
  }
  if not res then error("siteverify: " .. err) end
  if not restock.json.decode(res.body).success then
    return false, "The captcha was not solved"
  end
end)
]], ok_fake.url, no_fake.url) }
      variant(server, "v")
      -- While the good one waits on its slow siteverify, others are served.
      local conn = helpers.connect(server)
      assert(conn:send_request("POST", "/restock-notifications/variants/v",
        { json = { email = "a@example.com" },
          headers = { ["X-Captcha-Token"] = "good" } }))
      local t0 = socket.gettime()
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
      assert.truthy(socket.gettime() - t0 < 0.4)
      local res = conn:read_response()
      helpers.assert_status(res, 201)
      assert.truthy(socket.gettime() - t0 >= 0.45)
      conn:close()
      local req = ok_fake:wait_requests(1)[1]
      assert.truthy(req.body:find("response=good", 1, true))
      assert.truthy(req.body:find("remoteip=127.0.0.1", 1, true))

      helpers.assert_error(subscribe(server, { email = "b@example.com" },
        { ["X-Captcha-Token"] = "bad" }), 400, "not_allowed",
        "The captcha was not solved")
      helpers.assert_error(subscribe(server, { email = "c@example.com" }),
        400, "not_allowed", "Please complete the captcha")
      assert.same({ "a@example.com" }, active(server))
    end)

  it("refuses with 503 when the hook fails or takes over 5 s", function()
    local server = helpers.start { plugin = [[
local restock = require "restock"
restock.on_subscribe(function(s)
  if s.email:find("^boom") then error("the hook broke") end
  if s.email:find("^slow") then restock.sleep(60000) end
end)
]] }
    variant(server, "v")
    local res = subscribe(server, { email = "boom@example.com" })
    helpers.assert_error(res, 503, "unexpected_state")
    assert.truthy(helpers.wait_stderr(server, "the hook broke"))
    assert.truthy(server:stderr():find("on_subscribe failed", 1, true))

    local t0 = socket.gettime()
    local conn = helpers.connect(server, 10)
    res = conn:request("POST", "/restock-notifications/variants/v",
      { json = { email = "slow@example.com" } })
    local took = socket.gettime() - t0
    conn:close()
    helpers.assert_error(res, 503, "unexpected_state")
    assert.truthy(took >= 4.5 and took < 8, "took " .. took)
    assert.truthy(helpers.wait_stderr(server, "timed out after 5000 ms"))
    assert.same({}, active(server))
    helpers.assert_status(subscribe(server, { email = "fine@example.com" }),
      201)
  end)

  it("is one hook, set while plugin.lua loads", function()
    local dir = helpers.tmpdir()
    local path = dir .. "/twice.lua"
    local f = assert(io.open(path, "w"))
    f:write([[
local restock = require "restock"
restock.on_subscribe(function() end)
restock.on_subscribe(function() end)
]])
    f:close()
    local rc, _, stderr = helpers.run({ "check", "--config", path })
    assert.equals(2, rc)
    assert.truthy(stderr:find("at most one hook", 1, true), stderr)
    f = assert(io.open(path, "w"))
    f:write([[
local restock = require "restock"
restock.on_subscribe("not a function")
]])
    f:close()
    rc, _, stderr = helpers.run({ "check", "--config", path })
    assert.equals(2, rc)
    assert.truthy(stderr:find("function expected", 1, true), stderr)
  end)
end)
