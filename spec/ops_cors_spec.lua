-- The store_cors option (contract section 2): CORS for the storefront
-- routes (/restock-notifications/...) only. A listed Origin is echoed in
-- Access-Control-Allow-Origin with Vary: Origin, preflights included; an
-- unlisted one gets no allow header; admin and operations routes never get
-- CORS headers; without the option there are none at all.
local helpers = require "spec.support.helpers"

local admin = helpers.admin

local SHOP = "https://shop.example.com"
local OTHER = "https://other.example"
local PLUGIN = [[
local restock = require "restock"
restock.options { store_cors = "https://shop.example.com, https://other.example" }
]]

-- The Access-Control-* headers of a response, as a name -> value table,
-- and how many there were.
local function cors_headers(res)
  local out, n = {}, 0
  for name, value in pairs(res.headers) do
    if name:match("^access%-control%-") then
      out[name] = value
      n = n + 1
    end
  end
  return out, n
end

local function assert_no_cors(res, what)
  local h, n = cors_headers(res)
  local names = {}
  for k, v in pairs(h) do
    names[#names + 1] = k .. ": " .. v
  end
  assert.equals(0, n, (what or "the answer") .. " has CORS headers: "
    .. table.concat(names, "; "))
end

-- True when the Vary header lists Origin.
local function varies_on_origin(res)
  local vary = res.headers["vary"] or ""
  for token in vary:gmatch("[^,%s]+") do
    if token:lower() == "origin" then
      return true
    end
  end
  return false
end

local function subscribe(server, variant_id, origin, email)
  local headers = {}
  if origin then
    headers.Origin = origin
  end
  return helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { headers = headers,
      json = { email = email or "ann@example.com" } })
end

local function preflight(server, path, origin, extra)
  local headers = {
    Origin = origin,
    ["Access-Control-Request-Method"] = "POST",
    ["Access-Control-Request-Headers"] = "content-type",
  }
  for k, v in pairs(extra or {}) do
    headers[k] = v
  end
  return helpers.request(server, "OPTIONS", path, { headers = headers })
end

-- Whether a comma-separated header value lists token (case-insensitive).
local function lists(value, token)
  for item in (value or ""):gmatch("[^,]+") do
    if item:match("^%s*(.-)%s*$"):lower() == token:lower() then
      return true
    end
  end
  return false
end

describe("store_cors", function()
  after_each(helpers.cleanup)

  describe("with two origins listed", function()
    local server
    before_each(function()
      server = helpers.start { plugin = PLUGIN }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { variants = { { id = "sold", inventory_quantity = 0 },
          { id = "instock", inventory_quantity = 3 } } }), 200)
    end)

    it("echoes each listed origin on the subscribe route", function()
      for i, origin in ipairs({ SHOP, OTHER }) do
        local res = subscribe(server, "sold", origin,
          "u" .. i .. "@example.com")
        helpers.assert_status(res, 201)
        assert.equals(origin, res.headers["access-control-allow-origin"])
        assert.truthy(varies_on_origin(res),
          "no Vary: Origin, got " .. tostring(res.headers["vary"]))
        -- Never a wildcard with credentials-style echoing.
        assert.is_nil(res.headers["access-control-allow-credentials"])
      end
    end)

    it("echoes the origin on error answers too, so the page can read them",
      function()
        local res = subscribe(server, "instock", SHOP)
        helpers.assert_error(res, 400, "not_allowed")
        assert.equals(SHOP, res.headers["access-control-allow-origin"])
        res = subscribe(server, "no-such-variant", OTHER)
        helpers.assert_error(res, 404, "not_found")
        assert.equals(OTHER, res.headers["access-control-allow-origin"])
        res = helpers.request(server, "POST",
          "/restock-notifications/variants/sold", { headers = {
            Origin = SHOP, ["Content-Type"] = "application/json" },
            body = "{not json" })
        helpers.assert_error(res, 400, "invalid_data")
        assert.equals(SHOP, res.headers["access-control-allow-origin"])
      end)

    it("echoes it on the unsubscribe route", function()
      local res = helpers.request(server, "GET",
        "/restock-notifications/unsubscribe?token=bogus",
        { headers = { Origin = SHOP } })
      helpers.assert_error(res, 400)
      assert.equals(SHOP, res.headers["access-control-allow-origin"])
      assert.truthy(varies_on_origin(res))
    end)

    it("gives an unlisted origin no allow header, but still Vary: Origin",
      function()
        for i, origin in ipairs({
          "https://evil.example",
          "https://shop.example.com.evil.example", -- a listed one's prefix
          "https://shop.example",                  -- a prefix of a listed one
          "http://shop.example.com",               -- another scheme
          "https://SHOP.example.com",              -- origins are exact
          "https://shop.example.com, https://evil.example",
          "null",
        }) do
          local res = subscribe(server, "sold", origin,
            "x" .. i .. "@example.com")
          helpers.assert_status(res, 201)
          assert.is_nil(res.headers["access-control-allow-origin"],
            "origin " .. origin .. " was allowed")
          assert.truthy(varies_on_origin(res),
            "no Vary: Origin for origin " .. origin)
        end
      end)

    it("sends no allow header without an Origin, but Vary: Origin",
      function()
        local res = subscribe(server, "sold", nil)
        helpers.assert_status(res, 201)
        assert.is_nil(res.headers["access-control-allow-origin"])
        assert.truthy(varies_on_origin(res))
      end)

    it("answers a preflight from a listed origin with 204", function()
      for _, path in ipairs({ "/restock-notifications/variants/sold",
          "/restock-notifications/variants/anything-at-all",
          "/restock-notifications/unsubscribe" }) do
        local res = preflight(server, path, SHOP)
        helpers.assert_status(res, 204)
        assert.equals("", res.body)
        assert.equals(SHOP, res.headers["access-control-allow-origin"])
        assert.truthy(varies_on_origin(res))
        local methods = res.headers["access-control-allow-methods"]
        assert.truthy(lists(methods, "POST"),
          path .. ": Allow-Methods " .. tostring(methods))
        local allowed = res.headers["access-control-allow-headers"]
        assert.truthy(lists(allowed, "content-type"),
          path .. ": Allow-Headers " .. tostring(allowed))
        assert.truthy(lists(allowed, "x-publishable-api-key"),
          path .. ": Allow-Headers " .. tostring(allowed))
        local max_age = res.headers["access-control-max-age"]
        assert.truthy(max_age and max_age:match("^%d+$")
          and tonumber(max_age) > 0, "Max-Age " .. tostring(max_age))
      end
      -- The unsubscribe route's preflight allows GET as well.
      local res = preflight(server, "/restock-notifications/unsubscribe",
        OTHER, { ["Access-Control-Request-Method"] = "GET" })
      helpers.assert_status(res, 204)
      assert.equals(OTHER, res.headers["access-control-allow-origin"])
      assert.truthy(lists(res.headers["access-control-allow-methods"], "GET"))
    end)

    it("answers a preflight from an unlisted origin without allow headers",
      function()
        local res = preflight(server, "/restock-notifications/variants/sold",
          "https://evil.example")
        assert.truthy(res.status == 204 or res.status == 403,
          "preflight status " .. helpers.describe(res))
        assert_no_cors(res, "an unlisted origin's preflight")
        assert.truthy(varies_on_origin(res))
      end)

    it("does not count a preflight as a subscribe", function()
      for _ = 1, 3 do
        helpers.assert_status(preflight(server,
          "/restock-notifications/variants/sold", SHOP), 204)
      end
      local list = admin(server, "GET", "/admin/restock-notifications")
      assert.equals(0, list.json.count)
    end)

    it("never puts CORS headers on admin routes", function()
      local cases = {
        { "GET", "/admin/variants/sold", true },
        { "POST", "/admin/variants", true, { id = "new" } },
        { "GET", "/admin/restock-notifications", true },
        { "GET", "/admin/variants/sold", false }, -- 401
        { "OPTIONS", "/admin/variants", false },
        { "OPTIONS", "/admin/variants", true },
      }
      for _, c in ipairs(cases) do
        local method, path, authed, body = c[1], c[2], c[3], c[4]
        local headers = { Origin = SHOP,
          ["Access-Control-Request-Method"] = "POST" }
        if authed then
          headers.Authorization = "Bearer " .. helpers.ADMIN_TOKEN
        end
        local res = helpers.request(server, method, path,
          { headers = headers, json = body })
        local what = string.format("%s %s (%s) answered %d", method, path,
          authed and "with the token" or "without the token", res.status)
        assert_no_cors(res, what)
        assert.falsy(varies_on_origin(res), what .. " with Vary: Origin")
      end
    end)

    it("never puts CORS headers on /health, /metrics or unknown routes",
      function()
        for _, path in ipairs({ "/health", "/metrics", "/nowhere" }) do
          local res = helpers.request(server, "GET", path,
            { headers = { Origin = SHOP } })
          assert_no_cors(res, "GET " .. path)
        end
        assert_no_cors(preflight(server, "/health", SHOP), "OPTIONS /health")
      end)

    it("takes only paths under /restock-notifications/ for store routes",
      function()
        for _, path in ipairs({ "/restock-notificationsX/variants/sold",
            "/restock-notifications-old/variants/sold" }) do
          local res = helpers.request(server, "GET", path,
            { headers = { Origin = SHOP } })
          helpers.assert_error(res, 404, "not_found")
          assert_no_cors(res, "GET " .. path)
        end
      end)

    it("keeps the headers per request on a keep-alive connection",
      function()
        local conn = helpers.connect(server)
        local a = conn:request("POST", "/restock-notifications/variants/sold",
          { headers = { Origin = SHOP }, json = { email = "k1@example.com" } })
        local b = conn:request("POST", "/restock-notifications/variants/sold",
          { headers = { Origin = "https://evil.example" },
            json = { email = "k2@example.com" } })
        local c = conn:request("POST", "/restock-notifications/variants/sold",
          { headers = { Origin = OTHER }, json = { email = "k3@example.com" } })
        local d = conn:request("GET", "/admin/variants/sold", { headers = {
          Origin = SHOP,
          Authorization = "Bearer " .. helpers.ADMIN_TOKEN } })
        assert.equals(SHOP, a.headers["access-control-allow-origin"])
        assert.is_nil(b.headers["access-control-allow-origin"])
        assert.equals(OTHER, c.headers["access-control-allow-origin"])
        assert_no_cors(d, "the admin answer after store answers")
      end)
  end)

  describe("without store_cors", function()
    it("sends no CORS headers at all", function()
      local server = helpers.start()
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "sold", inventory_quantity = 0 }), 200)
      local res = subscribe(server, "sold", SHOP)
      helpers.assert_status(res, 201)
      assert_no_cors(res, "a subscribe")
      assert.falsy(varies_on_origin(res))
      res = preflight(server, "/restock-notifications/variants/sold", SHOP)
      assert_no_cors(res, "a preflight")
      res = helpers.request(server, "GET",
        "/restock-notifications/unsubscribe?token=x",
        { headers = { Origin = SHOP } })
      assert_no_cors(res, "an unsubscribe")
    end)

    it("sends none with an empty store_cors either", function()
      local server = helpers.start { plugin = [[
local restock = require "restock"
restock.options { store_cors = "" }
]] }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "sold", inventory_quantity = 0 }), 200)
      local res = subscribe(server, "sold", SHOP)
      helpers.assert_status(res, 201)
      assert.is_nil(res.headers["access-control-allow-origin"])
      res = preflight(server, "/restock-notifications/variants/sold", SHOP)
      assert.is_nil(res.headers["access-control-allow-origin"])
    end)
  end)

  it("follows a reload of plugin.lua", function()
    local server = helpers.start { plugin = PLUGIN }
    helpers.assert_status(admin(server, "POST", "/admin/variants",
      { id = "sold", inventory_quantity = 0 }), 200)
    assert.equals(SHOP, subscribe(server, "sold", SHOP, "a@example.com")
      .headers["access-control-allow-origin"])
    helpers.write_file(server.plugin_path, [[
local restock = require "restock"
restock.options { store_cors = "https://new.example" }
]])
    server:signal("HUP")
    assert(helpers.wait_stderr(server, "reload:", 5), "no reload logged")
    local res = subscribe(server, "sold", "https://new.example",
      "b@example.com")
    assert.equals("https://new.example",
      res.headers["access-control-allow-origin"])
    res = subscribe(server, "sold", SHOP, "c@example.com")
    assert.is_nil(res.headers["access-control-allow-origin"])
  end)
end)
