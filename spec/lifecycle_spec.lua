-- The subscription's whole life (contract sections 2-5): double opt-in and
-- the confirm route, the wanted quantity (with throttling), the locale and
-- the restocked event's subscribers, expiry, the shopper's own page, the
-- blocked domains, and what forgetting an email removes. The export and
-- the on_subscribe hook have specs of their own.
local helpers = require "spec.support.helpers"
local socket = require "socket"

local admin = helpers.admin

local RESTOCKED = "restock-notification.restocked"
local SUBSCRIBED = "restock-notification.subscribed"
local CONFIRMATION = "restock-notification.confirmation_requested"

-- A plugin with `options` (Lua table source) recording every event of ours
-- and each per-subscriber delivery.
local function plugin(rec, options)
  return helpers.recorder_plugin(rec) .. string.format([[
restock.options(%s)
restock.subscribe("%s", function(d) record("restocked", d) end)
restock.subscribe("%s", function(d) record("subscribed", d) end)
restock.subscribe("%s", function(d) record("confirm", d) end)
restock.subscribe("%s", function(d) record("each", d) end,
  { name = "each", each = "subscriber" })
]], options or "{}", RESTOCKED, SUBSCRIBED, CONFIRMATION, RESTOCKED)
end

local function start(options)
  local dir = helpers.tmpdir()
  local rec = dir .. "/records.jsonl"
  local server = helpers.start { dir = dir, plugin = plugin(rec, options) }
  return server, rec
end

local function variant(server, id, quantity, fields)
  local v = { id = id, title = "Title " .. id, inventory_quantity = quantity }
  for k, x in pairs(fields or {}) do
    v[k] = x
  end
  helpers.assert_status(admin(server, "POST", "/admin/variants", v), 200)
end

local function set_quantity(server, id, q)
  helpers.assert_status(admin(server, "POST", "/admin/variants/"
    .. helpers.urlencode(id), { inventory_quantity = q }), 200)
end

local function subscribe(server, id, body, headers)
  return helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(id), { json = body, headers = headers })
end

local function listing(server, query)
  local res = admin(server, "GET", "/admin/restock-notifications"
    .. helpers.query(query))
  helpers.assert_status(res, 200)
  return res.json.restock_notifications, res.json
end

local function emails_of(rows)
  local t = {}
  for i, r in ipairs(rows) do
    t[i] = r.email
  end
  return t
end

local function records(rec, tag, pred)
  local out = {}
  for _, r in ipairs(helpers.read_records(rec, tag)) do
    if not pred or pred(r.data) then
      out[#out + 1] = r.data
    end
  end
  return out
end

local function wait_record(rec, tag, pred, timeout)
  return helpers.wait_for(function()
    return records(rec, tag, pred)[1]
  end, timeout)
end

local function by_email(email)
  return function(d) return d.email == email end
end

local function get(server, path, query, headers)
  return helpers.request(server, "GET", path .. helpers.query(query or {}),
    { headers = headers })
end

local function post_form(server, path, fields, headers)
  local parts = {}
  for k, v in pairs(fields) do
    parts[#parts + 1] = helpers.urlencode(k) .. "=" .. helpers.urlencode(v)
  end
  local h = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  for k, v in pairs(headers or {}) do
    h[k] = v
  end
  return helpers.request(server, "POST", path,
    { body = table.concat(parts, "&"), headers = h })
end

local BROWSER = { Accept = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8" }

-- Asserts a small self-contained HTML page: its status, a viewport, no
-- script, nothing fetched from elsewhere.
local function assert_page(res, status)
  helpers.assert_status(res, status)
  assert.truthy((res.headers["content-type"] or ""):find("text/html", 1, true),
    helpers.describe(res))
  local body = res.body
  assert.truthy(body:find('<meta name="viewport"', 1, true))
  assert.falsy(body:find("<script", 1, true))
  assert.falsy(body:find('src="http', 1, true))
  assert.falsy(body:find('href="http', 1, true))
  assert.falsy(body:find("@import", 1, true))
  assert.truthy((res.headers["content-security-policy"] or "")
    :find("default-src 'none'", 1, true))
  return body
end

describe("double opt-in", function()
  after_each(helpers.cleanup)

  it("keeps a subscription pending until it is confirmed", function()
    local server, rec = start("{ double_opt_in = true }")
    variant(server, "v", 0)
    local res = subscribe(server, "v", { email = "Ann@Example.com",
      locale = "de", quantity = 2 })
    helpers.assert_status(res, 201)
    assert.equals("pending", res.json.restock_notification.status)
    assert.equals("ann@example.com", res.json.restock_notification.email)

    local c = wait_record(rec, "confirm", by_email("ann@example.com"))
    assert.truthy(c, "no confirmation_requested; stderr:\n" .. server:stderr())
    assert.equals("v", c.variant_id)
    assert.equals("de", c.locale)
    assert.equals("string", type(c.confirm_token))
    assert.equals("string", type(c.unsubscribe_token))
    assert.equals("string", type(c.manage_token))
    assert.are_not.equals(c.confirm_token, c.unsubscribe_token)

    -- Pending: listed as such, not active, and no subscribed event.
    assert.same({}, emails_of(listing(server, {})))
    local pending = listing(server, { status = "pending" })
    assert.same({ "ann@example.com" }, emails_of(pending))
    assert.equals(2, pending[1].quantity)
    assert.equals("de", pending[1].locale)
    assert.equals(0, helpers.events(server, { name = SUBSCRIBED }).count)

    -- A restock notifies no pending subscription.
    set_quantity(server, "v", 10)
    socket.sleep(0.3)
    assert.equals(0, helpers.events(server, { name = RESTOCKED }).count)
    set_quantity(server, "v", 0)

    -- Confirming makes it active and only then emits subscribed.
    res = get(server, "/restock-notifications/confirm",
      { token = c.confirm_token })
    helpers.assert_status(res, 200)
    assert.same({ confirmed = true }, res.json)
    assert.same({ "ann@example.com" }, emails_of(listing(server, {})))
    assert.same({}, emails_of(listing(server, { status = "pending" })))
    local s = wait_record(rec, "subscribed", by_email("ann@example.com"))
    assert.truthy(s, "no subscribed event after confirming")
    assert.equals(c.manage_token, s.manage_token)
    assert.equals(2, s.quantity)
    assert.equals("de", s.locale)

    -- Again: still 200, and no second subscribed event.
    res = helpers.request(server, "POST", "/restock-notifications/confirm",
      { json = { token = c.confirm_token } })
    helpers.assert_status(res, 200)
    assert.same({ confirmed = true }, res.json)
    socket.sleep(0.2)
    assert.equals(1, helpers.events(server, { name = SUBSCRIBED }).count)

    -- Now it is notified.
    set_quantity(server, "v", 5)
    local r = wait_record(rec, "restocked")
    assert.truthy(r, "not notified after confirming")
    assert.same({ "ann@example.com" }, r.emails)
  end)

  it("re-sends the confirmation at most once a minute", function()
    local server, rec = start("{ double_opt_in = true }")
    variant(server, "v", 0)
    helpers.assert_status(subscribe(server, "v", { email = "a@example.com" }),
      201)
    assert.truthy(wait_record(rec, "confirm"))
    for _ = 1, 3 do
      local res = subscribe(server, "v", { email = "a@example.com" })
      helpers.assert_status(res, 201)
      assert.equals("pending", res.json.restock_notification.status)
    end
    socket.sleep(0.3)
    assert.equals(1, helpers.events(server, { name = CONFIRMATION }).count)
    -- A minute later (the last mail's time moved back) it is sent again.
    assert.truthy(helpers.sql(server.db, "UPDATE restock_pending"
      .. " SET confirm_sent_at = confirm_sent_at - 61000"))
    helpers.assert_status(subscribe(server, "v", { email = "a@example.com" }),
      201)
    assert.truthy(helpers.wait_for(function()
      return helpers.events(server, { name = CONFIRMATION }).count == 2
    end), "no second confirmation after a minute")
    assert.same({ "a@example.com" },
      emails_of(listing(server, { status = "pending" })))
  end)

  it("does not count pending subscriptions in a throttle", function()
    -- notify_per_unit 1 and 2 units: two places, which the pending ones
    -- ahead in line must not take.
    local server, rec = start("{ notify_per_unit = 1 }")
    variant(server, "v", 0)
    -- Pending rows come from a server with double opt-in; restarting with
    -- it off keeps them pending.
    server:stop("TERM")
    local dir = server.dir
    local s2 = helpers.start { dir = dir, no_migrate = true,
      plugin = plugin(rec, "{ double_opt_in = true }") }
    for _, e in ipairs({ "p1@example.com", "p2@example.com" }) do
      helpers.assert_status(subscribe(s2, "v", { email = e }), 201)
    end
    s2:stop("TERM")
    local s3 = helpers.start { dir = dir, no_migrate = true,
      plugin = plugin(rec, "{ notify_per_unit = 1 }") }
    for _, e in ipairs({ "a1@example.com", "a2@example.com",
      "a3@example.com" }) do
      helpers.assert_status(subscribe(s3, "v", { email = e }), 201)
    end
    set_quantity(s3, "v", 2)
    local r = wait_record(rec, "restocked")
    assert.truthy(r, "no restock; stderr:\n" .. s3:stderr())
    assert.same({ "a1@example.com", "a2@example.com" }, r.emails)
    assert.same({ "p1@example.com", "p2@example.com" },
      emails_of(listing(s3, { status = "pending" })))
  end)

  it("drops unconfirmed subscriptions after confirm_ttl", function()
    local server, rec = start("{ double_opt_in = true, confirm_ttl = 1000 }")
    variant(server, "v", 0)
    helpers.assert_status(subscribe(server, "v", { email = "a@example.com" }),
      201)
    local c = wait_record(rec, "confirm")
    assert.truthy(c)
    assert.truthy(helpers.wait_for(function()
      return #listing(server, { status = "pending" }) == 0
    end, 5), "still pending after confirm_ttl")
    -- Deleted, not kept as history.
    for _, st in ipairs({ "active", "notified", "expired", "cancelled" }) do
      assert.same({}, listing(server, { status = st }))
    end
    assert.truthy(helpers.wait_stderr(server, "unconfirmed subscriptions "
      .. "dropped"))
    -- Its link now says it is gone.
    local res = get(server, "/restock-notifications/confirm",
      { token = c.confirm_token })
    helpers.assert_error(res, 400, "invalid_data")
    res = get(server, "/restock-notifications/confirm",
      { token = c.confirm_token }, BROWSER)
    assert_page(res, 400)
  end)

  it("keeps each token to its purpose", function()
    local server, rec = start("{ double_opt_in = true }")
    variant(server, "v", 0)
    helpers.assert_status(subscribe(server, "v", { email = "a@example.com" }),
      201)
    local c = wait_record(rec, "confirm")
    assert.truthy(c)
    local confirm, unsub, manage = c.confirm_token, c.unsubscribe_token,
      c.manage_token
    -- An unsubscribe token and a manage token cannot confirm; cut short or
    -- changed, the confirm token neither.
    for _, t in ipairs({ unsub, manage, confirm:sub(1, -2),
      confirm:sub(1, 10), confirm .. "A", "", "x" }) do
      helpers.assert_error(get(server, "/restock-notifications/confirm",
        { token = t }), 400, "invalid_data")
    end
    assert.same({ "a@example.com" },
      emails_of(listing(server, { status = "pending" })))
    -- A confirm token and a manage token cannot unsubscribe.
    for _, t in ipairs({ confirm, manage }) do
      helpers.assert_error(get(server, "/restock-notifications/unsubscribe",
        { token = t }), 400, "invalid_data")
    end
    assert.same({ "a@example.com" },
      emails_of(listing(server, { status = "pending" })))
    -- A confirm or unsubscribe token is no manage token.
    for _, t in ipairs({ confirm, unsub, manage:sub(1, -3) }) do
      helpers.assert_error(get(server, "/restock-notifications/mine",
        { token = t }), 400, "invalid_data")
    end
    helpers.assert_error(get(server, "/restock-notifications/confirm"), 400,
      "invalid_data", "token is required")
    -- The unsubscribe token removes the pending subscription.
    helpers.assert_status(get(server, "/restock-notifications/unsubscribe",
      { token = unsub }), 200)
    assert.same({}, listing(server, { status = "pending" }))
    helpers.assert_error(get(server, "/restock-notifications/confirm",
      { token = confirm }), 400, "invalid_data")
    helpers.assert_status(get(server, "/health"), 200)
  end)

  it("answers a browser with pages", function()
    local server, rec = start("{ double_opt_in = true }")
    variant(server, "v", 0)
    local res = post_form(server, "/restock-notifications/variants/v",
      { email = "a@example.com" }, BROWSER)
    local body = assert_page(res, 201)
    assert.truthy(body:find("a@example.com", 1, true))
    assert.truthy(body:find("Check your inbox", 1, true), body)
    local c = wait_record(rec, "confirm")
    res = get(server, "/restock-notifications/confirm",
      { token = c.confirm_token }, BROWSER)
    body = assert_page(res, 200)
    assert.truthy(body:find("Your alert is on", 1, true), body)
    -- With a link to the shopper's page.
    assert.truthy(body:find('href="mine?token=' .. c.manage_token, 1, true),
      body)
    res = get(server, "/restock-notifications/confirm", { token = "nope" },
      BROWSER)
    body = assert_page(res, 400)
    assert.truthy(body:find("This link does not work", 1, true), body)
  end)
end)

describe("the wanted quantity", function()
  after_each(helpers.cleanup)

  it("notifies a subscription only once its scope holds enough", function()
    local server, rec = start()
    variant(server, "v", 0)
    helpers.assert_status(subscribe(server, "v",
      { email = "five@example.com", quantity = 5 }), 201)
    helpers.assert_status(subscribe(server, "v",
      { email = "any@example.com" }), 201)
    helpers.assert_status(subscribe(server, "v",
      { email = "two@example.com", quantity = 2 }), 201)
    set_quantity(server, "v", 3)
    local r = wait_record(rec, "restocked")
    assert.truthy(r, "no restock; stderr:\n" .. server:stderr())
    -- The later, smaller wishes go first; five stays subscribed.
    assert.same({ "any@example.com", "two@example.com" }, r.emails)
    assert.same({ "five@example.com" }, emails_of(listing(server, {})))

    -- While the scope holds fewer than a shopper wants, that shopper may
    -- subscribe although it is not sold out; a smaller wish may not.
    helpers.assert_status(subscribe(server, "v",
      { email = "ten@example.com", quantity = 10 }), 201)
    helpers.assert_error(subscribe(server, "v", { email = "b@example.com" }),
      400, "not_allowed",
      "You cannot sign up for restock notifications on a product that is "
      .. "not sold out")
    helpers.assert_error(subscribe(server, "v",
      { email = "b@example.com", quantity = 3 }), 400, "not_allowed")

    set_quantity(server, "v", 6)
    assert.truthy(helpers.wait_for(function()
      return #records(rec, "restocked") == 2
    end), "five was not notified at 6")
    assert.same({ "five@example.com" }, records(rec, "restocked")[2].emails)
    assert.same({ "ten@example.com" }, emails_of(listing(server, {})))
    -- A new wish replaces the old one, if the scope is still short of it.
    local res = subscribe(server, "v", { email = "ten@example.com",
      quantity = 8 })
    helpers.assert_status(res, 201)
    assert.equals(8, res.json.restock_notification.quantity)
    assert.equals(8, listing(server, {})[1].quantity)
    helpers.assert_error(subscribe(server, "v", { email = "ten@example.com",
      quantity = 4 }), 400, "not_allowed")
    assert.equals(8, listing(server, {})[1].quantity)
  end)

  it("leaves the places of a throttled check to those it can serve",
    function()
      -- 2 units and notify_per_unit 1: two places; the one who wants 5 is
      -- passed over and takes none of them.
      local server, rec = start("{ notify_per_unit = 1 }")
      variant(server, "v", 0)
      helpers.assert_status(subscribe(server, "v",
        { email = "big@example.com", quantity = 5 }), 201)
      for _, e in ipairs({ "a@example.com", "b@example.com",
        "c@example.com" }) do
        helpers.assert_status(subscribe(server, "v", { email = e }), 201)
      end
      set_quantity(server, "v", 2)
      local r = wait_record(rec, "restocked")
      assert.truthy(r)
      assert.same({ "a@example.com", "b@example.com" }, r.emails)
      assert.same({ "big@example.com", "c@example.com" },
        emails_of(listing(server, {})))
    end)
end)

describe("the locale and the restocked event's subscribers", function()
  after_each(helpers.cleanup)

  it("are given to handlers, one entry per email in order", function()
    local server, rec = start()
    variant(server, "v", 0)
    helpers.assert_status(subscribe(server, "v",
      { email = "de@example.com", locale = "de" }), 201)
    helpers.assert_status(subscribe(server, "v",
      { email = "plain@example.com" }), 201)
    helpers.assert_status(subscribe(server, "v",
      { email = "br@example.com", locale = "pt-BR", quantity = 1 }), 201)
    local s = wait_record(rec, "subscribed", by_email("de@example.com"))
    assert.equals("de", s.locale)
    set_quantity(server, "v", 4)
    local r = wait_record(rec, "restocked")
    assert.truthy(r)
    assert.same({ "de@example.com", "plain@example.com", "br@example.com" },
      r.emails)
    assert.equals(3, #r.subscribers)
    for i, sub in ipairs(r.subscribers) do
      assert.equals(r.emails[i], sub.email)
      assert.equals("string", type(sub.manage_token))
      assert.truthy(sub.subscribed_at:match("^%d%d%d%d%-%d%d%-%d%dT"))
    end
    assert.equals("de", r.subscribers[1].locale)
    assert.is_nil(r.subscribers[2].locale)
    assert.is_nil(r.subscribers[2].quantity)
    assert.equals("pt-BR", r.subscribers[3].locale)
    assert.equals(1, r.subscribers[3].quantity)
    assert.equals(s.manage_token, r.subscribers[1].manage_token)
    -- A per-subscriber handler gets its own entry.
    local each = helpers.wait_for(function()
      local e = records(rec, "each")
      return #e == 3 and e
    end)
    assert.truthy(each)
    for _, e in ipairs(each) do
      assert.equals(e.email, e.subscriber.email)
      assert.is_nil(e.emails)
      assert.is_nil(e.subscribers)
      if e.email == "br@example.com" then
        assert.equals("pt-BR", e.subscriber.locale)
      end
    end
  end)
end)

describe("bad input", function()
  after_each(helpers.cleanup)

  it("answers 400 for a bad quantity or locale and stays healthy", function()
    local server = start()
    variant(server, "v", 0)
    local bad = {
      { quantity = 0 }, { quantity = -1 }, { quantity = 1.5 },
      { quantity = "3" }, { quantity = 1000000000000 }, { quantity = true },
      { quantity = 1000001 },
      { locale = string.rep("a", 36) }, { locale = "de DE" },
      { locale = "" }, { locale = 7 }, { locale = "d" },
      { locale = "de-" }, { locale = "123" },
    }
    for _, b in ipairs(bad) do
      b.email = "a@example.com"
      local res = subscribe(server, "v", b)
      helpers.assert_error(res, 400, "invalid_data")
    end
    -- Raw JSON the Lua encoder would not write.
    local res = helpers.request(server, "POST",
      "/restock-notifications/variants/v", { body =
        '{"email":"a@example.com","quantity":1e3}',
        headers = { ["Content-Type"] = "application/json" } })
    helpers.assert_error(res, 400, "invalid_data")
    res = helpers.request(server, "POST",
      "/restock-notifications/variants/v", { body =
        '{"email":"a@example.com","quantity":99999999999999999999999}',
        headers = { ["Content-Type"] = "application/json" } })
    assert.equals(400, res.status)
    -- In a form.
    for _, q in ipairs({ "0", "-1", "1.5", "abc", "1e3", "99999999" }) do
      res = post_form(server, "/restock-notifications/variants/v",
        { email = "a@example.com", quantity = q })
      helpers.assert_error(res, 400, "invalid_data")
    end
    assert.same({}, listing(server, {}))
    -- The limits themselves are fine, and a 35-character locale too.
    helpers.assert_status(subscribe(server, "v", { email = "a@example.com",
      quantity = 1000000, locale = "en-" .. string.rep("a", 8) .. "-"
        .. string.rep("b", 8) .. "-" .. string.rep("c", 8) .. "-abcde" }),
      201)
    helpers.assert_status(post_form(server,
      "/restock-notifications/variants/v",
      { email = "b@example.com", quantity = "3", locale = "fr-CA" }), 201)
    local rows = listing(server, {})
    assert.equals(2, #rows)
    assert.equals(3, rows[2].quantity)
    assert.equals("fr-CA", rows[2].locale)
    helpers.assert_status(get(server, "/health"), 200)
    -- An unknown listing status.
    helpers.assert_error(admin(server, "GET",
      "/admin/restock-notifications?status=waiting"), 400, "invalid_data")
  end)
end)

describe("expiry", function()
  after_each(helpers.cleanup)

  it("moves old never-notified subscriptions to the history", function()
    local server, rec = start("{ subscription_ttl = 1000 }")
    variant(server, "v", 0)
    helpers.assert_status(subscribe(server, "v", { email = "a@example.com" }),
      201)
    assert.truthy(helpers.wait_for(function()
      return #listing(server, { status = "expired" }) == 1
    end, 5), "not expired; stderr:\n" .. server:stderr())
    local row = listing(server, { status = "expired" })[1]
    assert.equals("a@example.com", row.email)
    assert.equals("expired", row.status)
    assert.truthy(row.expired_at)
    assert.same({}, listing(server, {}))
    -- An expired subscription is not notified.
    set_quantity(server, "v", 5)
    socket.sleep(0.3)
    assert.same({}, records(rec, "restocked"))
    -- And the shopper may subscribe again.
    set_quantity(server, "v", 0)
    helpers.assert_status(subscribe(server, "v", { email = "a@example.com" }),
      201)
  end)
end)

describe("the shopper's page", function()
  after_each(helpers.cleanup)

  local function setup()
    local server, rec = start()
    variant(server, "v", 0, { title = "Blue <Shirt> & Co" })
    variant(server, "w", 0, { title = "Red Hat" })
    helpers.assert_status(subscribe(server, "v", { email = "a@example.com",
      quantity = 2, locale = "en" }), 201)
    helpers.assert_status(subscribe(server, "w", { email = "a@example.com" }),
      201)
    helpers.assert_status(subscribe(server, "w", { email = "b@example.com" }),
      201)
    local s = wait_record(rec, "subscribed", by_email("a@example.com"))
    return server, rec, s.manage_token
  end

  it("lists an email's alerts as JSON", function()
    local server, _, manage = setup()
    local res = get(server, "/restock-notifications/mine", { token = manage })
    helpers.assert_status(res, 200)
    assert.equals("a@example.com", res.json.email)
    local list = res.json.restock_notifications
    assert.equals(2, #list)
    assert.equals("v", list[1].variant_id)
    assert.equals(2, list[1].quantity)
    assert.equals("active", list[1].status)
    assert.equals("w", list[2].variant_id)
    -- Each one's token unsubscribes it, and only it.
    helpers.assert_status(get(server, "/restock-notifications/unsubscribe",
      { token = list[2].unsubscribe_token }), 200)
    res = get(server, "/restock-notifications/mine", { token = manage })
    assert.equals(1, #res.json.restock_notifications)
    assert.same({ "a@example.com", "b@example.com" },
      emails_of(listing(server, {})))
    -- The manage token itself unsubscribes nothing.
    helpers.assert_error(get(server, "/restock-notifications/unsubscribe",
      { token = manage }), 400, "invalid_data")
    helpers.assert_error(get(server, "/restock-notifications/mine"), 400,
      "invalid_data", "token is required")
    helpers.assert_error(get(server, "/restock-notifications/mine",
      { token = string.rep("A", 5000) }), 400, "invalid_data")
  end)

  it("is a page with a button per alert that works without script",
    function()
      local server, _, manage = setup()
      local res = get(server, "/restock-notifications/mine",
        { token = manage }, BROWSER)
      local body = assert_page(res, 200)
      assert.truthy(body:find("a@example.com", 1, true))
      -- Titles escaped.
      assert.truthy(body:find("Blue &lt;Shirt&gt; &amp; Co", 1, true), body)
      assert.truthy(body:find("Red Hat", 1, true))
      local forms = {}
      for f in body:gmatch('<form method="post" action="unsubscribe">(.-)'
        .. '</form>') do
        forms[#forms + 1] = f
      end
      assert.equals(2, #forms)
      local token = forms[1]:match('name="token" value="([^"]+)"')
      local back = forms[1]:match('name="manage" value="([^"]+)"')
      assert.equals(manage, back)
      -- The browser posts the form.
      res = post_form(server, "/restock-notifications/unsubscribe",
        { token = token, manage = back }, BROWSER)
      body = assert_page(res, 200)
      assert.truthy(body:find("Unsubscribed", 1, true))
      assert.truthy(body:find('href="mine?token=' .. manage, 1, true), body)
      res = get(server, "/restock-notifications/mine", { token = manage })
      assert.equals(1, #res.json.restock_notifications)
      assert.equals("w", res.json.restock_notifications[1].variant_id)
      -- A bad token is a page too.
      res = get(server, "/restock-notifications/mine", { token = "x" },
        BROWSER)
      assert_page(res, 400)
    end)

  it("speaks the browser's language when it has its words", function()
    local server, _, manage = setup()
    local res = get(server, "/restock-notifications/mine", { token = manage },
      { Accept = "text/html", ["Accept-Language"] = "fr-CH, de-AT;q=0.8" })
    local body = assert_page(res, 200)
    assert.truthy(body:find('<html lang="de">', 1, true), body)
    assert.truthy(body:find("Ihre Benachrichtigungen", 1, true))
    assert.truthy(body:find(">Abmelden<", 1, true))
    -- No file for the language: English.
    res = get(server, "/restock-notifications/mine", { token = manage },
      { Accept = "text/html", ["Accept-Language"] = "ja" })
    body = assert_page(res, 200)
    assert.truthy(body:find('<html lang="en">', 1, true))
    assert.truthy(body:find("Your restock alerts", 1, true))
  end)

  it("names nothing once the email is forgotten", function()
    local server, _, manage = setup()
    helpers.assert_status(admin(server, "DELETE",
      "/admin/restock-notifications?email=a@example.com"), 200)
    helpers.assert_error(get(server, "/restock-notifications/mine",
      { token = manage }), 400, "invalid_data")
    assert.same({ "b@example.com" }, emails_of(listing(server, {})))
  end)
end)

describe("blocked_email_domains", function()
  after_each(helpers.cleanup)

  it("refuses a domain and its subdomains", function()
    local server = start(
      '{ blocked_email_domains = "mailinator.com, Spam.Example" }')
    variant(server, "v", 0)
    for _, e in ipairs({ "a@mailinator.com", "a@x.mailinator.com",
      "a@MAILINATOR.COM", "a@spam.example", "a@deep.sub.spam.example" }) do
      local res = subscribe(server, "v", { email = e })
      helpers.assert_error(res, 400, "not_allowed")
      assert.truthy(res.json.message:find("not accepted", 1, true),
        res.json.message)
    end
    for _, e in ipairs({ "a@notmailinator.com", "a@mailinator.com.au",
      "a@example.com" }) do
      helpers.assert_status(subscribe(server, "v", { email = e }), 201)
    end
  end)

  it("refuses an entry that is not a domain when plugin.lua loads",
    function()
      local path = helpers.tmpdir() .. "/bad.lua"
      local f = assert(io.open(path, "w"))
      f:write('local restock = require "restock"\n'
        .. 'restock.options { blocked_email_domains = "ok.example, x@y" }\n')
      f:close()
      local rc, _, stderr = helpers.run({ "check", "--config", path })
      assert.equals(2, rc)
      assert.truthy(stderr:find("blocked_email_domains", 1, true), stderr)
      assert.truthy(stderr:find("'x@y' is not a domain", 1, true), stderr)
    end)
end)

describe("forgetting an email", function()
  after_each(helpers.cleanup)

  it("removes its pending subscriptions and scrubs its events", function()
    local dir = helpers.tmpdir()
    local rec = dir .. "/records.jsonl"
    local server = helpers.start { dir = dir, plugin = plugin(rec) }
    variant(server, "v", 0)
    variant(server, "w", 0)
    helpers.assert_status(subscribe(server, "v", { email = "a@example.com" }),
      201)
    helpers.assert_status(subscribe(server, "v", { email = "b@example.com" }),
      201)
    set_quantity(server, "v", 5)
    assert.truthy(wait_record(rec, "restocked"))
    server:stop("TERM")
    server = helpers.start { dir = dir, no_migrate = true,
      plugin = plugin(rec, "{ double_opt_in = true }") }
    helpers.assert_status(subscribe(server, "w", { email = "a@example.com" }),
      201)
    helpers.assert_status(subscribe(server, "w", { email = "b@example.com" }),
      201)
    assert.truthy(helpers.wait_for(function()
      return helpers.events(server, { name = CONFIRMATION }).count == 2
    end))

    local res = admin(server, "DELETE",
      "/admin/restock-notifications?email=a@example.com")
    helpers.assert_status(res, 200)
    assert.same({ "b@example.com" },
      emails_of(listing(server, { status = "pending" })))
    local conf = helpers.events(server, { name = CONFIRMATION })
    assert.equals(1, conf.count)
    assert.equals("b@example.com", conf.events[1].data.email)
    local restocked = helpers.events(server, { name = RESTOCKED }).events[1]
    assert.same({ "b@example.com" }, restocked.data.emails)
    assert.equals(1, #restocked.data.subscribers)
    assert.equals("b@example.com", restocked.data.subscribers[1].email)
  end)
end)
