-- The console's session (contract section 5): POST /admin/login with the
-- admin token sets a session cookie (HttpOnly, SameSite=Strict, Secure
-- behind a trusted HTTPS proxy, 12 hours) and answers its CSRF token; every
-- admin route accepts the cookie, but a state-changing request on the
-- cookie alone must carry a same-origin Origin or X-Restock-CSRF, else 403
-- not_allowed; logout ends it; a client gets at most 10 failed logins a
-- minute. Sessions are rows of the database, stored hashed.
local helpers = require "spec.support.helpers"

local TOKEN = helpers.ADMIN_TOKEN

local function login(server, body, headers)
  local opts = { headers = headers or {} }
  if type(body) == "string" then
    opts.body = body
    opts.headers["Content-Type"] = opts.headers["Content-Type"]
      or "application/x-www-form-urlencoded"
  else
    opts.json = body
  end
  return helpers.request(server, "POST", "/admin/login", opts)
end

-- The cookie "restockd_session=..." of a login's answer, as a Cookie header
-- value, and the Set-Cookie line itself.
local function cookie_of(res)
  local line = res.headers["set-cookie"] or ""
  local value = line:match("^(restockd_session=[^;]*)")
  return value, line
end

local function logged_in(server)
  local res = login(server, { token = TOKEN })
  helpers.assert_status(res, 200)
  local cookie = cookie_of(res)
  assert.truthy(cookie, "no session cookie in " .. helpers.describe(res))
  return cookie, res.json.csrf_token
end

local function with_cookie(server, method, path, cookie, opts)
  opts = opts or {}
  opts.headers = opts.headers or {}
  opts.headers.Cookie = cookie
  return helpers.request(server, method, path, opts)
end

local function sql(db, statement)
  return helpers.sql(db, statement) or ""
end

describe("the console's session", function()
  after_each(helpers.cleanup)

  it("refuses a wrong token with 401 and sets no cookie", function()
    local server = helpers.start()
    local res = login(server, { token = "not-the-token" })
    helpers.assert_error(res, 401, "unauthorized")
    assert.is_nil(res.headers["set-cookie"])
    res = login(server, {})
    helpers.assert_error(res, 401, "unauthorized")
    res = login(server, { token = 7 })
    helpers.assert_error(res, 400, "invalid_data")
  end)

  it("logs in with the token in JSON or a form, with a strict cookie",
    function()
      local server = helpers.start()
      local res = login(server, { token = TOKEN })
      helpers.assert_status(res, 200)
      assert.equals("string", type(res.json.csrf_token))
      assert.equals(43, #res.json.csrf_token)
      local cookie, line = cookie_of(res)
      assert.truthy(cookie, line)
      assert.truthy(line:find("; HttpOnly", 1, true), line)
      assert.truthy(line:find("; SameSite=Strict", 1, true), line)
      assert.truthy(line:find("; Path=/admin", 1, true), line)
      assert.truthy(line:find("; Max-Age=43200", 1, true), line)
      assert.falsy(line:find("Secure", 1, true), line)
      assert.falsy(res.body:find(cookie:match("=(.*)"), 1, true),
        "the answer shows the cookie")

      res = login(server, "token=" .. helpers.urlencode(TOKEN))
      helpers.assert_status(res, 200)
      assert.truthy(cookie_of(res))
      -- A browser's plain form is sent on to the console.
      res = login(server, "token=" .. helpers.urlencode(TOKEN),
        { Accept = "text/html,application/xhtml+xml" })
      helpers.assert_status(res, 303)
      assert.equals("/admin/", res.headers["location"])
      assert.truthy(cookie_of(res))
    end)

  it("marks the cookie Secure behind a trusted proxy that says https",
    function()
      local server = helpers.start({ plugin = [[
local restock = require "restock"
restock.options { trust_proxy = true }
]] })
      local res = login(server, { token = TOKEN },
        { ["X-Forwarded-Proto"] = "https", ["X-Forwarded-For"] = "192.0.2.7" })
      local _, line = cookie_of(res)
      assert.truthy(line:find("; Secure", 1, true), line)
      res = login(server, { token = TOKEN }, { ["X-Forwarded-Proto"] = "http" })
      _, line = cookie_of(res)
      assert.falsy(line:find("Secure", 1, true), line)
      -- Not trusted: the header is the client's word only.
      local plain = helpers.start()
      res = login(plain, { token = TOKEN }, { ["X-Forwarded-Proto"] = "https" })
      _, line = cookie_of(res)
      assert.falsy(line:find("Secure", 1, true), line)
    end)

  it("lets the cookie read any admin route and answers its CSRF token",
    function()
      local server = helpers.start()
      local cookie, csrf = logged_in(server)
      local res = with_cookie(server, "GET", "/admin/session", cookie)
      helpers.assert_status(res, 200)
      assert.equals(csrf, res.json.csrf_token)
      assert.truthy(res.json.expires_at:match("^%d%d%d%d%-"))
      res = with_cookie(server, "GET", "/admin/variants", cookie)
      helpers.assert_status(res, 200)
      -- Without a cookie, or with a forged one, there is no session.
      helpers.assert_error(helpers.request(server, "GET", "/admin/session"),
        401, "unauthorized")
      local forged = cookie:sub(1, -2) .. (cookie:sub(-1) == "0" and "1" or "0")
      res = with_cookie(server, "GET", "/admin/variants", forged)
      helpers.assert_error(res, 401, "unauthorized")
      res = with_cookie(server, "GET", "/admin/variants",
        "restockd_session=" .. string.rep("a", 32) .. "." .. string.rep("b", 64))
      helpers.assert_error(res, 401, "unauthorized")
      -- The bearer token alone has no session to show.
      helpers.assert_error(helpers.admin(server, "GET", "/admin/session"), 401,
        "unauthorized")
    end)

  it("refuses a change made with the cookie alone, or from another origin",
    function()
      local server = helpers.start()
      local cookie, csrf = logged_in(server)
      local body = { json = { id = "v1", title = "Shirt" } }
      local res = with_cookie(server, "POST", "/admin/variants", cookie,
        { json = body.json })
      helpers.assert_error(res, 403, "not_allowed")
      res = with_cookie(server, "POST", "/admin/variants", cookie,
        { json = body.json, headers = { Origin = "https://evil.example" } })
      helpers.assert_error(res, 403, "not_allowed")
      res = with_cookie(server, "POST", "/admin/variants", cookie,
        { json = body.json, headers = { ["X-Restock-CSRF"] = string.rep("A", 43) } })
      helpers.assert_error(res, 403, "not_allowed")
      res = with_cookie(server, "DELETE",
        "/admin/restock-notifications?email=ann@example.com", cookie)
      helpers.assert_error(res, 403, "not_allowed")
      -- Nothing was stored by the refused requests.
      res = helpers.admin(server, "GET", "/admin/variants/v1")
      helpers.assert_status(res, 404)

      -- The console's own header, or the same origin, goes through.
      res = with_cookie(server, "POST", "/admin/variants", cookie,
        { json = body.json, headers = { ["X-Restock-CSRF"] = csrf } })
      helpers.assert_status(res, 200)
      assert.equals("Shirt", res.json.variants[1].title)
      local origin = string.format("http://%s:%d", server.connect_host,
        server.port)
      res = with_cookie(server, "POST", "/admin/variants/v1", cookie,
        { json = { title = "Blue shirt" }, headers = { Origin = origin } })
      helpers.assert_status(res, 200)
      assert.equals("Blue shirt", res.json.variant.title)
      -- Reads need neither.
      res = with_cookie(server, "GET", "/admin/variants/v1", cookie)
      helpers.assert_status(res, 200)
      -- The bearer token is not a cookie: no CSRF rule for it.
      res = helpers.admin(server, "POST", "/admin/variants/v1", { title = "x" })
      helpers.assert_status(res, 200)
    end)

  it("ends the session at logout, on the node's database", function()
    local server = helpers.start()
    local cookie, csrf = logged_in(server)
    local res = with_cookie(server, "POST", "/admin/logout", cookie,
      { headers = { ["X-Restock-CSRF"] = csrf } })
    helpers.assert_status(res, 200)
    assert.equals(true, res.json.logged_out)
    local line = res.headers["set-cookie"] or ""
    assert.truthy(line:find("Max-Age=0", 1, true), line)
    res = with_cookie(server, "GET", "/admin/variants", cookie)
    helpers.assert_error(res, 401, "unauthorized")
    assert.equals("0", sql(server.db, "SELECT count(*) FROM admin_sessions"):match("%d+"))
  end)

  it("keeps sessions hashed in the database, across a restart", function()
    local dir = helpers.tmpdir()
    local server = helpers.start({ dir = dir })
    local cookie = logged_in(server)
    local selector, validator = cookie:match("=(%x+)%.(%x+)$")
    local rows = sql(server.db, "SELECT selector, validator_hash FROM admin_sessions")
    assert.truthy(rows:find(selector, 1, true), rows)
    assert.falsy(rows:find(validator, 1, true), "the validator is stored as is")
    server:stop()
    local again = helpers.start({ dir = dir, db = server.db,
      no_migrate = true })
    local res = with_cookie(again, "GET", "/admin/session", cookie)
    helpers.assert_status(res, 200)
  end)

  it("refuses a session past its end", function()
    local server = helpers.start()
    local cookie = logged_in(server)
    local res = with_cookie(server, "GET", "/admin/variants", cookie)
    helpers.assert_status(res, 200)
    sql(server.db, "UPDATE admin_sessions SET expires_at = 1000")
    res = with_cookie(server, "GET", "/admin/variants", cookie)
    helpers.assert_error(res, 401, "unauthorized")
  end)

  it("gives a client 10 failed logins a minute, then 429 even for the "
    .. "right token", function()
      local server = helpers.start({ plugin = [[
local restock = require "restock"
restock.options { trust_proxy = true }
]] })
      local from = { ["X-Forwarded-For"] = "198.51.100.9" }
      for i = 1, 10 do
        local res = login(server, { token = "guess-" .. i }, from)
        helpers.assert_error(res, 401, "unauthorized")
      end
      local res = login(server, { token = "guess-11" }, from)
      helpers.assert_error(res, 429, "too_many_requests")
      local retry = tonumber(res.headers["retry-after"])
      assert.truthy(retry and retry >= 1 and retry <= 60,
        "Retry-After: " .. tostring(res.headers["retry-after"]))
      res = login(server, { token = TOKEN }, from)
      helpers.assert_error(res, 429, "too_many_requests")
      assert.is_nil(res.headers["set-cookie"])
      -- Another address is not held back; successes never count.
      for _ = 1, 12 do
        res = login(server, { token = TOKEN }, { ["X-Forwarded-For"] = "198.51.100.10" })
        helpers.assert_status(res, 200)
      end
    end)

  it("answers 401 to a login when the admin API is disabled", function()
    local server = helpers.start({ env = { RESTOCK_ADMIN_TOKEN = false } })
    helpers.assert_error(login(server, { token = "" }), 401, "unauthorized")
    helpers.assert_error(login(server, { token = "x" }), 401, "unauthorized")
  end)

  it("serves the console's files without a session, and nothing else",
    function()
      local server = helpers.start()
      for _, path in ipairs({ "/admin/", "/admin/console.js", "/admin/console.css" }) do
        local res = helpers.request(server, "GET", path)
        helpers.assert_status(res, 200)
        local csp = res.headers["content-security-policy"] or ""
        assert.truthy(csp:find("default-src 'none'", 1, true), path .. ": " .. csp)
        assert.truthy(csp:find("frame-ancestors 'none'", 1, true), csp)
        assert.falsy(csp:find("unsafe", 1, true), csp)
        assert.equals("DENY", res.headers["x-frame-options"])
        assert.equals("nosniff", res.headers["x-content-type-options"])
      end
      local res = helpers.request(server, "GET", "/admin")
      helpers.assert_status(res, 301)
      assert.equals("/admin/", res.headers["location"])
      helpers.assert_error(helpers.request(server, "GET", "/admin/reports/demand"),
        401, "unauthorized")
      helpers.assert_error(helpers.request(server, "POST", "/admin/logout"),
        401, "unauthorized")
      -- The page loads nothing from elsewhere.
      res = helpers.request(server, "GET", "/admin/")
      assert.falsy(res.body:find("https?://"), "the page names another origin")
      assert.falsy(res.body:find("<script>", 1, true), "an inline script")
      assert.falsy(res.body:find(" style=", 1, true), "an inline style")
    end)
end)
