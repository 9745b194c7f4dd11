-- GET /widget.js (contract section 8) as HTTP sees it: a script served with
-- Cache-Control, an ETag and 304s, gzipped for clients that take it, under
-- 10 KB compressed; and the CORS it relies on (store_cors): the preflight
-- of the exact request the widget sends, and the Retry-After of a 429 made
-- readable to it. The widget's behaviour in a page is spec/browser's.
local helpers = require "spec.support.helpers"

local SHOP = "http://shop.example.test:8080"
local PLUGIN = [[
local restock = require "restock"
restock.options { store_cors = "http://shop.example.test:8080",
                  subscribe_rate_limit = 2 }
]]

describe("GET /widget.js", function()
  local server
  setup(function()
    server = helpers.start({ plugin = PLUGIN })
  end)
  teardown(helpers.cleanup)

  it("is a script with an ETag, cached by anyone, and answers 304", function()
    local res = helpers.request(server, "GET", "/widget.js")
    helpers.assert_status(res, 200)
    assert.truthy(res.headers["content-type"]:find("text/javascript", 1, true))
    assert.truthy(res.headers["cache-control"]:find("public", 1, true))
    assert.truthy(res.headers["cache-control"]:find("max-age=", 1, true))
    assert.equals("nosniff", res.headers["x-content-type-options"])
    local etag = res.headers["etag"]
    assert.truthy(etag and etag:match('^"[%w-]+"$'), tostring(etag))
    assert.truthy(res.body:find("RestockWidget", 1, true))
    assert.truthy(res.body:find("data-restock-variant", 1, true))

    local again = helpers.request(server, "GET", "/widget.js",
      { headers = { ["If-None-Match"] = etag } })
    helpers.assert_status(again, 304)
    assert.equals("", again.body)
    assert.equals(etag, again.headers["etag"])
    assert.is_nil(again.headers["content-length"])
    again = helpers.request(server, "GET", "/widget.js",
      { headers = { ["If-None-Match"] = 'W/"other", ' .. etag } })
    helpers.assert_status(again, 304)
    again = helpers.request(server, "GET", "/widget.js",
      { headers = { ["If-None-Match"] = '"stale"' } })
    helpers.assert_status(again, 200)
  end)

  it("is gzipped for a client that takes it, under 10 KB", function()
    local plain = helpers.request(server, "GET", "/widget.js")
    local res = helpers.request(server, "GET", "/widget.js",
      { headers = { ["Accept-Encoding"] = "gzip, deflate, br" } })
    helpers.assert_status(res, 200)
    assert.equals("gzip", res.headers["content-encoding"])
    assert.truthy(res.headers["vary"]:find("Accept-Encoding", 1, true))
    assert.are_not.equal(plain.headers["etag"], res.headers["etag"])
    assert.truthy(#res.body < 10 * 1024, #res.body .. " bytes gzipped")
    -- The bytes are the script itself.
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/w.gz", res.body)
    local p = io.popen("gzip -dc " .. dir .. "/w.gz")
    assert.equals(plain.body, p:read("a"))
    p:close()
    print(string.format("widget.js: %d bytes, %d gzipped", #plain.body,
      #res.body))
    res = helpers.request(server, "GET", "/widget.js",
      { headers = { ["Accept-Encoding"] = "gzip;q=0, identity" } })
    assert.is_nil(res.headers["content-encoding"])
  end)

  it("can post cross-origin: the preflight allows the widget's headers",
    function()
      local res = helpers.request(server, "OPTIONS",
        "/restock-notifications/variants/v1", { headers = {
          Origin = SHOP,
          ["Access-Control-Request-Method"] = "POST",
          ["Access-Control-Request-Headers"] =
            "accept,content-type,x-publishable-api-key",
        } })
      assert.truthy(res.status == 204 or res.status == 200, helpers.describe(res))
      assert.equals(SHOP, res.headers["access-control-allow-origin"])
      assert.truthy(res.headers["access-control-allow-methods"]:find("POST", 1, true))
      local allowed = res.headers["access-control-allow-headers"]:lower()
      for _, h in ipairs({ "content-type", "x-publishable-api-key" }) do
        assert.truthy(allowed:find(h, 1, true), allowed)
      end
    end)

  it("lets the widget read a 429's Retry-After", function()
    helpers.assert_status(helpers.admin(server, "POST", "/admin/variants",
      { id = "v1" }), 200)
    local last
    for i = 1, 3 do
      last = helpers.request(server, "POST", "/restock-notifications/variants/v1",
        { json = { email = "r" .. i .. "@example.com" }, headers = { Origin = SHOP } })
    end
    helpers.assert_error(last, 429, "too_many_requests")
    assert.truthy(tonumber(last.headers["retry-after"]))
    assert.equals(SHOP, last.headers["access-control-allow-origin"])
    assert.truthy(last.headers["access-control-expose-headers"]:find("Retry-After", 1, true))
  end)
end)

describe("GET /admin/events?variant_id=", function()
  after_each(helpers.cleanup)

  it("lists the restocked events of that variant only", function()
    local server = helpers.start()
    for _, id in ipairs({ "a", "b" }) do
      helpers.assert_status(helpers.admin(server, "POST", "/admin/variants",
        { id = id }), 200)
      helpers.assert_status(helpers.request(server, "POST",
        "/restock-notifications/variants/" .. id,
        { json = { email = "x@example.com" } }), 201)
      helpers.assert_status(helpers.admin(server, "POST", "/admin/variants/" .. id,
        { inventory_quantity = 2 }), 200)
    end
    local j = helpers.wait_for(function()
      local r = helpers.events(server, { variant_id = "b" })
      return r.count == 1 and r
    end)
    assert.truthy(j, "no restocked event of b")
    assert.equals("restock-notification.restocked", j.events[1].name)
    assert.equals("b", j.events[1].data.variant_id)
    assert.equals(0, helpers.events(server, { variant_id = "c" }).count)
    assert.equals(0, helpers.events(server, { variant_id = "b", status = "dead" }).count)
  end)

  it("finds a restocked event a script emitted by the variant in its data",
    function()
    -- restockd passes the variant of the restocked events it writes; one
    -- written by restock.emit has the store read it from its data.
    local server = helpers.start({ plugin = [[
local restock = require "restock"
restock.subscribe("restock-notification.subscribed", function(data)
  if data.variant_id == "a" then
    restock.emit("restock-notification.restocked",
      { variant_id = "from-script", emails = { data.email } })
  end
end, { name = "emitter" })
]] })
    helpers.assert_status(helpers.admin(server, "POST", "/admin/variants",
      { id = "a" }), 200)
    helpers.assert_status(helpers.request(server, "POST",
      "/restock-notifications/variants/a",
      { json = { email = "x@example.com" } }), 201)
    local j = helpers.wait_for(function()
      local r = helpers.events(server, { variant_id = "from-script" })
      return r.count == 1 and r
    end)
    assert.truthy(j, "the emitted restocked event is not listed by variant")
    assert.same({ "x@example.com" }, j.events[1].data.emails)
    assert.equals(0, helpers.events(server, { variant_id = "a" }).count)
  end)
end)
