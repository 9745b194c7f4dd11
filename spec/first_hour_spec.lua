-- What a new user tripped over in the first hour (issue 11), each at its
-- cause: per-subscriber deliveries, `false, err` failing a delivery, plugin
-- mistakes refused or warned about, JSON bodies labelled as forms, a
-- browser's form answered with a page, listings and deletes for what a user
-- created, and unsubscribe tokens that are opaque and bound to one
-- subscription.
local helpers = require "spec.support.helpers"
local cjson = require "cjson"

local admin = helpers.admin
local RESTOCKED = "restock-notification.restocked"

local function subscribe(server, variant_id, email, headers)
  return helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { json = { email = email },
      headers = headers })
end

local function variant(server, id, q)
  helpers.assert_status(admin(server, "POST", "/admin/variants",
    { id = id, inventory_quantity = q or 0 }), 200)
end

local function set_quantity(server, id, q)
  helpers.assert_status(admin(server, "POST", "/admin/variants/"
    .. helpers.urlencode(id), { inventory_quantity = q }), 200)
end

local function write_plugin(text)
  local path = helpers.tmpdir() .. "/plugin.lua"
  helpers.write_file(path, text)
  return path
end

describe("each = \"subscriber\"", function()
  after_each(helpers.cleanup)

  it("delivers once per shopper, and a failure for one resends to nobody "
    .. "else", function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir,
        plugin = helpers.recorder_plugin(rec) .. [[
restock.options { max_attempts = 3 }
restock.subscribe("restock-notification.restocked", function(data)
  record("mail", { email = data.email, subscriber = data.subscriber,
    emails = data.emails, variant_id = data.variant_id })
  if data.email == "bad@example.com" then
    return nil, "mailbox unavailable"
  end
end, { name = "mailer", each = "subscriber" })
]] }
      variant(server, "v")
      for _, e in ipairs { "ann@example.com", "bad@example.com",
                           "cid@example.com" } do
        helpers.assert_status(subscribe(server, "v", e), 201)
      end
      set_quantity(server, "v", 5)
      -- Three attempts for the failing address, one each for the others.
      local recs = helpers.wait_records(rec, "mail", 5, 15)
      assert.truthy(recs, "not every attempt ran; stderr:\n"
        .. server:stderr())
      local per = {}
      for _, r in ipairs(recs) do
        per[r.data.email] = (per[r.data.email] or 0) + 1
        assert.equals("v", r.data.variant_id)
        assert.is_nil(r.data.emails)
        assert.equals(r.data.email, r.data.subscriber.email)
      end
      assert.same({ ["ann@example.com"] = 1, ["bad@example.com"] = 3,
        ["cid@example.com"] = 1 }, per)
      local ev = helpers.wait_for(function()
        local j = helpers.events(server, { name = RESTOCKED })
        return j.events[1] and j.events[1].status == "dead" and j.events[1]
      end, 10)
      assert.truthy(ev, "the event is not dead once one delivery is")
      local by = {}
      for _, d in ipairs(ev.deliveries) do by[d.subscriber] = d end
      assert.equals("delivered", by["ann@example.com"].status)
      assert.equals("delivered", by["cid@example.com"].status)
      assert.equals("dead", by["bad@example.com"].status)
      assert.equals(3, by["bad@example.com"].attempts)
      assert.truthy(by["bad@example.com"].last_error:find("mailbox", 1, true))
      -- Retrying the event sends only the dead one again.
      helpers.assert_status(admin(server, "POST", string.format(
        "/admin/events/%d/retry", ev.id)), 200)
      assert.truthy(helpers.wait_records(rec, "mail", 6, 10))
      local last = helpers.read_records(rec, "mail")
      assert.equals("bad@example.com", last[#last].data.email)
    end)

  it("refuses each other than subscriber or event", function()
    local path = write_plugin([[
require("restock").subscribe("restock-notification.restocked",
  function() end, { each = "email" })
]])
    local rc, _, err = helpers.run({ "check", "--config", path })
    assert.equals(2, rc)
    assert.truthy(err:find("each", 1, true), err)
  end)
end)

describe("a handler's return values", function()
  after_each(helpers.cleanup)

  it("fails the delivery on false, err as on nil, err", function()
    local dir = helpers.tmpdir()
    local rec = dir .. "/records.jsonl"
    local server = helpers.start { dir = dir,
      plugin = helpers.recorder_plugin(rec) .. [[
restock.options { max_attempts = 1 }
restock.subscribe("restock-notification.restocked", function(data)
  record("ran", data.variant_id)
  return false, "smtp down"
end, { name = "smtp" })
]] }
    variant(server, "v")
    helpers.assert_status(subscribe(server, "v", "ann@example.com"), 201)
    set_quantity(server, "v", 1)
    local ev = helpers.wait_for(function()
      local j = helpers.events(server, { name = RESTOCKED })
      return j.events[1] and j.events[1].status == "dead" and j.events[1]
    end, 10)
    assert.truthy(ev, "false, err did not fail the delivery")
    assert.equals("smtp down", ev.deliveries[1].last_error)
  end)
end)

describe("plugin mistakes", function()
  after_each(helpers.cleanup)

  it("exits 2 naming an unknown key of restock.subscribe's options",
    function()
      local path = write_plugin([[
require("restock").subscribe("restock-notification.restocked",
  function() end, { nme = "x" })
]])
      local rc, _, err = helpers.run({ "check", "--config", path })
      assert.equals(2, rc)
      assert.truthy(err:find("nme", 1, true), err)
      local dir = helpers.tmpdir()
      local db = dir .. "/restock.db"
      assert.equals(0, (helpers.run({ "migrations", "run", "--db", db })))
      rc, _, err = helpers.run({ "start", "--db", db, "--config", path,
        "--port", "0" })
      assert.equals(2, rc)
      assert.truthy(err:find("nme", 1, true), err)
    end)

  it("warns, at load and in check, of a handler for an event nothing emits",
    function()
      local path = write_plugin([[
local restock = require "restock"
restock.subscribe("restock-notification.restock", function() end,
  { name = "typo" })
restock.subscribe("shop.custom", function() end, { name = "custom" })
restock.subscribe("restock-notification.restocked", function()
  restock.emit("shop.custom", {})
end)
]])
      local rc, out, err = helpers.run({ "check", "--config", path })
      assert.equals(0, rc, err)
      cjson.decode(out) -- stdout stays the options' JSON
      assert.truthy(err:find('"restock-notification.restock"', 1, true), err)
      assert.truthy(err:find("typo", 1, true), err)
      -- An event the script emits itself is fine.
      assert.falsy(err:find("'custom' will never run", 1, true), err)
      local server = helpers.start { config = path }
      assert.truthy(helpers.wait_stderr(server, "restock-notification.restock\""),
        server:stderr())
      assert.truthy(server:stderr():find("WARN", 1, true))
    end)

  it("does not take a shipped script's own event for a typo", function()
    local path = write_plugin([[
require("sendgrid").setup { from = "shop@example.com" }
]])
    local rc, _, err = helpers.run({ "check", "--config", path },
      { SENDGRID_API_KEY = "SG.x" })
    assert.equals(0, rc, err)
    assert.truthy(err:find("sendgrid-restocked-part", 1, true), err)
    assert.falsy(err:find("never emits", 1, true), err)
  end)

  it("check prints each event with its handlers", function()
    local path = write_plugin([[
local restock = require "restock"
restock.options { max_attempts = 4 }
restock.subscribe("restock-notification.restocked", function() end,
  { name = "mailer", each = "subscriber" })
restock.subscribe("restock-notification.restocked", function() end,
  { name = "slack", max_attempts = 9 })
restock.subscribe("product-variant.updated", function() end)
]])
    local rc, out, err = helpers.run({ "check", "--config", path })
    assert.equals(0, rc, err)
    assert.equals(4, cjson.decode(out).max_attempts)
    assert.truthy(err:find("restock-notification.restocked:", 1, true), err)
    assert.truthy(err:find("handler 'mailer' (max_attempts 4, each "
      .. "subscriber)", 1, true), err)
    assert.truthy(err:find("handler 'slack' (max_attempts 9, each event)", 1,
      true), err)
    assert.truthy(err:find("handler 'product-variant.updated#1' "
      .. "(max_attempts 4, each event)", 1, true), err)
  end)

  it("gives restock.emit at load time one message in check and in start",
    function()
      local path = write_plugin([[
require("restock").emit("shop.hello", {})
]])
      local rc, _, check_err = helpers.run({ "check", "--config", path })
      assert.equals(2, rc)
      local dir = helpers.tmpdir()
      local db = dir .. "/restock.db"
      assert.equals(0, (helpers.run({ "migrations", "run", "--db", db })))
      local rc2, _, start_err = helpers.run({ "start", "--db", db,
        "--config", path, "--port", "0" })
      assert.equals(2, rc2)
      local want = "restock.emit cannot be called while plugin.lua loads; "
        .. "call it from a handler"
      assert.truthy(check_err:find(want, 1, true), check_err)
      assert.truthy(start_err:find(want, 1, true), start_err)
    end)

  it("logs one warning when the admin API is disabled", function()
    local server = helpers.start { env = { RESTOCK_ADMIN_TOKEN = false } }
    assert.truthy(helpers.wait_stderr(server, "admin API is disabled"))
    local _, n = server:stderr():gsub("admin API is disabled", "")
    assert.equals(1, n)
  end)
end)

describe("the subscribe route's bodies", function()
  after_each(helpers.cleanup)

  it("reads a JSON object sent with curl's default form label as JSON",
    function()
      local server = helpers.start()
      variant(server, "v")
      local res = helpers.request(server, "POST",
        "/restock-notifications/variants/v", {
          body = '{"email": "jane@example.com"}',
          headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        })
      helpers.assert_status(res, 201)
      assert.equals("jane@example.com", res.json.restock_notification.email)
      -- A real form still works.
      res = helpers.request(server, "POST",
        "/restock-notifications/variants/v", { body = "email=max%40ex.com",
          headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        })
      helpers.assert_status(res, 201)
    end)

  it("answers a browser's form with a page, with the same status", function()
    local server = helpers.start()
    variant(server, "v")
    variant(server, "in", 3)
    local browser = {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      Accept = "text/html,application/xhtml+xml,*/*;q=0.8",
    }
    local res = helpers.request(server, "POST",
      "/restock-notifications/variants/v",
      { body = "email=jane%40example.com", headers = browser })
    assert.equals(201, res.status)
    assert.truthy(res.headers["content-type"]:find("text/html", 1, true))
    assert.truthy(res.body:find("jane@example.com", 1, true))
    assert.truthy(res.body:find("<!doctype html>", 1, true))
    res = helpers.request(server, "POST", "/restock-notifications/variants/in",
      { body = "email=jane%40example.com", headers = browser })
    assert.equals(400, res.status)
    assert.truthy(res.headers["content-type"]:find("text/html", 1, true))
    assert.truthy(res.body:find("not sold out", 1, true), res.body)
    res = helpers.request(server, "POST", "/restock-notifications/variants/v",
      { body = "email=%3Cscript%3E", headers = browser })
    assert.equals(400, res.status)
    assert.falsy(res.body:find("<script>", 1, true), res.body)
    -- The same form posted by a script (no text/html first) gets JSON.
    res = helpers.request(server, "POST", "/restock-notifications/variants/v",
      { body = "email=jim%40example.com", headers = {
        ["Content-Type"] = "application/x-www-form-urlencoded" } })
    assert.equals(201, res.status)
    assert.equals("jim@example.com", res.json.restock_notification.email)
  end)
end)

describe("reading back what was created", function()
  after_each(helpers.cleanup)

  it("lists variants with q, sold_out, quantity and waiting", function()
    local server = helpers.start()
    helpers.assert_status(admin(server, "POST", "/admin/variants", {
      variants = {
        { id = "shirt-m", title = "Blue shirt, M", inventory_quantity = 0 },
        { id = "shirt-l", title = "Blue shirt, L", inventory_quantity = 4 },
        { id = "mug", sku = "MUG-1", inventory_quantity = 0 },
      } }), 200)
    helpers.assert_status(subscribe(server, "shirt-m", "a@example.com"), 201)
    helpers.assert_status(subscribe(server, "shirt-m", "b@example.com"), 201)
    local j = admin(server, "GET", "/admin/variants").json
    assert.equals(3, j.count)
    assert.same({ "mug", "shirt-l", "shirt-m" },
      { j.variants[1].id, j.variants[2].id, j.variants[3].id })
    assert.equals(2, j.variants[3].waiting)
    assert.equals(0, j.variants[3].quantity)
    j = admin(server, "GET", "/admin/variants?q=blue").json
    assert.equals(2, j.count)
    j = admin(server, "GET", "/admin/variants?q=MUG").json
    assert.equals(1, j.count)
    assert.equals("mug", j.variants[1].id)
    j = admin(server, "GET", "/admin/variants?sold_out=true").json
    assert.equals(2, j.count)
    j = admin(server, "GET", "/admin/variants?sold_out=false").json
    assert.equals(1, j.count)
    assert.equals("shirt-l", j.variants[1].id)
    j = admin(server, "GET", "/admin/variants?limit=1&offset=1").json
    assert.equals(3, j.count)
    assert.equals("shirt-l", j.variants[1].id)
    helpers.assert_error(admin(server, "GET", "/admin/variants?sold_out=maybe"),
      400, "invalid_data")
  end)

  it("deletes a variant, moving its subscriptions to the history as "
    .. "cancelled", function()
      local server = helpers.start()
      variant(server, "v")
      helpers.assert_status(subscribe(server, "v", "a@example.com"), 201)
      local res = admin(server, "DELETE", "/admin/variants/v")
      helpers.assert_status(res, 200)
      assert.same({ deleted = true }, res.json)
      helpers.assert_error(admin(server, "GET", "/admin/variants/v"), 404,
        "not_found")
      helpers.assert_error(admin(server, "DELETE", "/admin/variants/v"), 404,
        "not_found")
      local h = admin(server, "GET",
        "/admin/restock-notifications?status=cancelled").json
      assert.equals(1, h.count)
      assert.equals("a@example.com", h.restock_notifications[1].email)
      assert.equals("cancelled", h.restock_notifications[1].status)
      assert.equals(0, admin(server, "GET",
        "/admin/restock-notifications").json.count)
    end)

  it("lists and deletes locations, channels, keys and levels", function()
    local server = helpers.start()
    variant(server, "v")
    helpers.assert_status(admin(server, "POST", "/admin/stock-locations",
      { id = "loc_a", name = "A" }), 200)
    helpers.assert_status(admin(server, "POST", "/admin/stock-locations",
      { id = "loc_b", name = "B" }), 200)
    helpers.assert_status(admin(server, "POST", "/admin/sales-channels",
      { id = "sc_1", name = "Web", location_ids = { "loc_a", "loc_b" } }), 200)
    helpers.assert_status(admin(server, "POST", "/admin/publishable-api-keys",
      { id = "pk_1", sales_channel_ids = { "sc_1" } }), 200)
    helpers.assert_status(admin(server, "POST", "/admin/inventory-levels",
      { variant_id = "v", location_id = "loc_a", stocked_quantity = 0 }), 200)
    helpers.assert_status(admin(server, "POST", "/admin/inventory-levels",
      { variant_id = "v", location_id = "loc_b", stocked_quantity = 2,
        reserved_quantity = 5 }), 200)

    local locs = admin(server, "GET", "/admin/stock-locations").json
    assert.equals(2, locs.count)
    assert.equals("loc_a", locs.stock_locations[1].id)
    assert.equals("A", locs.stock_locations[1].name)
    local chans = admin(server, "GET", "/admin/sales-channels").json
    assert.same({ "loc_a", "loc_b" }, chans.sales_channels[1].location_ids)
    local keys = admin(server, "GET", "/admin/publishable-api-keys").json
    assert.same({ "sc_1" }, keys.publishable_api_keys[1].sales_channel_ids)
    local levels = admin(server, "GET",
      "/admin/inventory-levels?variant_id=v").json.inventory_levels
    assert.equals(2, #levels)
    assert.equals(-3, levels[2].available_quantity)
    assert.equals(1, #admin(server, "GET",
      "/admin/inventory-levels?location_id=loc_b").json.inventory_levels)
    helpers.assert_error(admin(server, "GET", "/admin/inventory-levels"), 400,
      "invalid_data")

    -- A subscriber in the channel; deleting the location that held the
    -- sum down (more reserved than stocked) raises the variant's quantity.
    helpers.assert_status(subscribe(server, "v", "a@example.com",
      { ["x-publishable-api-key"] = "pk_1" }), 201)
    helpers.assert_status(admin(server, "POST", "/admin/inventory-levels",
      { variant_id = "v", location_id = "loc_a", stocked_quantity = 2 }), 200)
    assert.equals(-1, admin(server, "GET", "/admin/variants/v").json.variant
      .quantity)
    helpers.assert_status(admin(server, "DELETE",
      "/admin/stock-locations/loc_b"), 200)
    assert.equals(2, admin(server, "GET", "/admin/variants/v").json.variant
      .quantity)
    local notified = helpers.wait_for(function()
      return admin(server, "GET",
        "/admin/restock-notifications?status=notified").json.count == 1
    end)
    assert.truthy(notified, "deleting the location did not restock")
    assert.same({ "loc_a" }, admin(server, "GET",
      "/admin/sales-channels").json.sales_channels[1].location_ids)

    helpers.assert_status(subscribe(server, "v", "b@example.com",
      { ["x-publishable-api-key"] = "pk_1" }), 400)
    helpers.assert_status(admin(server, "POST", "/admin/inventory-levels",
      { variant_id = "v", location_id = "loc_a", stocked_quantity = 0 }), 200)
    helpers.assert_status(subscribe(server, "v", "b@example.com",
      { ["x-publishable-api-key"] = "pk_1" }), 201)
    helpers.assert_status(admin(server, "DELETE",
      "/admin/publishable-api-keys/pk_1"), 200)
    helpers.assert_error(subscribe(server, "v", "c@example.com",
      { ["x-publishable-api-key"] = "pk_1" }), 400, "invalid_data")
    helpers.assert_status(admin(server, "DELETE", "/admin/sales-channels/sc_1"),
      200)
    local cancelled = admin(server, "GET",
      "/admin/restock-notifications?status=cancelled").json
    assert.equals(1, cancelled.count)
    assert.equals("b@example.com", cancelled.restock_notifications[1].email)
    for _, path in ipairs { "/admin/sales-channels/sc_1",
        "/admin/stock-locations/nope", "/admin/publishable-api-keys/pk_1" } do
      helpers.assert_error(admin(server, "DELETE", path), 404, "not_found")
    end
  end)
end)

describe("unsubscribe tokens", function()
  after_each(helpers.cleanup)

  local function token_of(server, email)
    local j = helpers.events(server,
      { name = "restock-notification.subscribed", limit = 1000 })
    local found
    for _, e in ipairs(j.events) do
      if e.data.email == email then found = e.data.unsubscribe_token end
    end
    return found
  end

  it("are opaque, bound to one subscription, and canonical", function()
    local server = helpers.start()
    variant(server, "secret-variant")
    helpers.assert_status(subscribe(server, "secret-variant",
      "jane@example.com"), 201)
    local t1 = token_of(server, "jane@example.com")
    assert.truthy(t1)
    -- Nothing of the email or the variant can be read from it.
    local mime = require "mime"
    for _, piece in ipairs { t1, (mime.unb64(t1:gsub("-", "+"):gsub("_", "/")
        .. "=") or "") } do
      assert.falsy(piece:find("jane", 1, true))
      assert.falsy(piece:find("secret", 1, true))
    end
    assert.equals(36, #t1)
    -- One character changed, whatever it becomes, is refused.
    local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
      .. "0123456789-_"
    for i = 1, #t1 do
      local c = t1:sub(i, i)
      local k = alphabet:find(c, 1, true) % #alphabet + 1
      local changed = t1:sub(1, i - 1) .. alphabet:sub(k, k) .. t1:sub(i + 1)
      local res = helpers.request(server, "GET",
        "/restock-notifications/unsubscribe?token=" .. changed)
      assert.equals(400, res.status, "a changed token was taken: "
        .. changed)
    end
    -- It removes its subscription...
    helpers.assert_status(helpers.request(server, "GET",
      "/restock-notifications/unsubscribe?token=" .. t1), 200)
    assert.equals(0, admin(server, "GET",
      "/admin/restock-notifications").json.count)
    -- ...and not the same email's later re-subscription.
    helpers.assert_status(subscribe(server, "secret-variant",
      "jane@example.com"), 201)
    helpers.assert_status(helpers.request(server, "GET",
      "/restock-notifications/unsubscribe?token=" .. t1), 200)
    assert.equals(1, admin(server, "GET",
      "/admin/restock-notifications").json.count)
    local tokens = {}
    for _, e in ipairs(helpers.events(server,
        { name = "restock-notification.subscribed" }).events) do
      tokens[#tokens + 1] = e.data.unsubscribe_token
    end
    assert.equals(2, #tokens)
    assert.are_not.equal(tokens[1], tokens[2])
    helpers.assert_status(helpers.request(server, "GET",
      "/restock-notifications/unsubscribe?token=" .. tokens[2]), 200)
    assert.equals(0, admin(server, "GET",
      "/admin/restock-notifications").json.count)
  end)

  it("answers a browser with a page", function()
    local server = helpers.start()
    local res = helpers.request(server, "GET",
      "/restock-notifications/unsubscribe?token=nope",
      { headers = { Accept = "text/html" } })
    assert.equals(400, res.status)
    assert.truthy(res.headers["content-type"]:find("text/html", 1, true))
  end)
end)
