-- The store route POST /restock-notifications/variants/{variant_id}
-- (contract section 5): bodies, email rules, duplicates, the sold-out rule,
-- unknown variants and unknown sales channels or keys.
local helpers = require "spec.support.helpers"

local null = helpers.null
local admin = helpers.admin

local NOT_SOLD_OUT = "You cannot sign up for restock notifications "
  .. "on a product that is not sold out"

-- Subscribes with a JSON body (a table, or a raw string) and extra headers.
local function subscribe(server, variant_id, body, headers)
  local opts = { headers = headers or {} }
  if type(body) == "string" then
    opts.body = body
    opts.headers["Content-Type"] = opts.headers["Content-Type"]
      or "application/json"
  else
    opts.json = body
  end
  return helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), opts)
end

-- Subscribes with a form body.
local function subscribe_form(server, variant_id, form)
  return helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { body = form, headers = {
      ["Content-Type"] = "application/x-www-form-urlencoded" } })
end

-- The admin list for a query table.
local function list(server, query)
  local res = admin(server, "GET", "/admin/restock-notifications"
    .. helpers.query(query or {}))
  helpers.assert_status(res, 200)
  return res.json
end

-- Asserts a 201 answer for variant_id and email and returns the record.
local function assert_subscribed(res, variant_id, email)
  helpers.assert_status(res, 201)
  local n = res.json and res.json.restock_notification
  assert.equals("table", type(n), "no restock_notification in " .. res.body)
  assert.equals(variant_id, n.variant_id)
  assert.equals(email, n.email)
  assert.equals(null, n.sales_channel_id)
  assert.truthy(n.created_at ~= nil and n.created_at ~= null,
    "no created_at in " .. res.body)
  return n
end

describe("POST /restock-notifications/variants/{variant_id}", function()
  after_each(helpers.cleanup)

  local server
  before_each(function()
    server = helpers.start()
    local res = admin(server, "POST", "/admin/variants", { variants = {
      { id = "sold-out", inventory_quantity = 0 },
      { id = "oversold", inventory_quantity = -3 },
      { id = "in-stock", inventory_quantity = 5 },
      { id = "unmanaged", inventory_quantity = 0, manage_inventory = false },
      { id = "backorder", inventory_quantity = 0, allow_backorder = true },
      { id = "var 1", inventory_quantity = 0 },
    } })
    helpers.assert_status(res, 200)
  end)

  describe("a sold-out variant", function()
    it("takes a JSON email and answers 201", function()
      local res = subscribe(server, "sold-out", { email = "alice@example.com" })
      assert_subscribed(res, "sold-out", "alice@example.com")
      local l = list(server, { variant_id = "sold-out" })
      assert.equals(1, l.count)
      assert.equals("alice@example.com", l.restock_notifications[1].email)
    end)

    it("takes a form body", function()
      local res = subscribe_form(server, "sold-out",
        "email=carol%2Btag%40example.com")
      assert_subscribed(res, "sold-out", "carol+tag@example.com")
      assert.equals(1, list(server, { email = "carol+tag@example.com" }).count)
    end)

    it("takes a form body with other fields around the email", function()
      local res = subscribe_form(server, "sold-out",
        "source=footer&email=dave%40example.com&x=1")
      assert_subscribed(res, "sold-out", "dave@example.com")
    end)

    it("trims and lower-cases the email", function()
      local res = subscribe(server, "sold-out",
        { email = "  Alice.Smith@Example.COM \t" })
      assert_subscribed(res, "sold-out", "alice.smith@example.com")
      local l = list(server, { variant_id = "sold-out" })
      assert.equals("alice.smith@example.com", l.restock_notifications[1].email)
    end)

    it("counts a variant with negative stock as sold out", function()
      local res = subscribe(server, "oversold", { email = "eve@example.com" })
      assert_subscribed(res, "oversold", "eve@example.com")
    end)

    it("decodes the variant id in the path", function()
      local res = subscribe(server, "var 1", { email = "frank@example.com" })
      assert_subscribed(res, "var 1", "frank@example.com")
    end)

    it("answers 201 again for a duplicate and stores one row", function()
      local first = assert_subscribed(subscribe(server, "sold-out",
        { email = "bob@example.com" }), "sold-out", "bob@example.com")
      local second = assert_subscribed(subscribe(server, "sold-out",
        { email = "bob@example.com" }), "sold-out", "bob@example.com")
      assert.equals(first.created_at, second.created_at)
      local l = list(server, { variant_id = "sold-out",
        email = "bob@example.com" })
      assert.equals(1, l.count)
      assert.equals(1, #l.restock_notifications)
    end)

    it("treats a differently written email as the same subscriber", function()
      local first = assert_subscribed(subscribe(server, "sold-out",
        { email = "bob@example.com" }), "sold-out", "bob@example.com")
      local second = assert_subscribed(subscribe_form(server, "sold-out",
        "email=%20BOB%40Example.com"), "sold-out", "bob@example.com")
      assert.equals(first.created_at, second.created_at)
      assert.equals(1, list(server, { variant_id = "sold-out" }).count)
    end)

    it("keeps one subscription per variant for the same email", function()
      assert_subscribed(subscribe(server, "sold-out",
        { email = "gina@example.com" }), "sold-out", "gina@example.com")
      assert_subscribed(subscribe(server, "oversold",
        { email = "gina@example.com" }), "oversold", "gina@example.com")
      assert.equals(2, list(server, { email = "gina@example.com" }).count)
    end)
  end)

  describe("email validation", function()
    local valid = {
      { "a 64-character local part", string.rep("l", 64) .. "@example.com" },
      { "a 254-character address", string.rep("l", 60) .. "@"
        .. string.rep("d", 60) .. "." .. string.rep("d", 60) .. "."
        .. string.rep("d", 60) .. "." .. string.rep("d", 6) .. ".com" },
      { "a subdomain", "h@mail.example.co.uk" },
      { "a plus and a dot", "first.last+tag@example.org" },
    }
    for _, case in ipairs(valid) do
      it("accepts " .. case[1], function()
        if case[1]:find("254", 1, true) then
          assert.equals(254, #case[2])
        end
        local res = subscribe(server, "sold-out", { email = case[2] })
        assert_subscribed(res, "sold-out", case[2])
      end)
    end

    local invalid = {
      { "an empty email", "" },
      { "blanks only", "   " },
      { "no @", "plainaddress" },
      { "two @", "a@b@example.com" },
      { "an empty local part", "@example.com" },
      { "a 65-character local part", string.rep("l", 65) .. "@example.com" },
      { "an undotted domain", "a@localhost" },
      { "an empty domain", "a@" },
      { "an empty domain label", "a@example..com" },
      { "a leading dot in the domain", "a@.example.com" },
      { "a trailing dot in the domain", "a@example.com." },
      { "a 255-character address", string.rep("l", 60) .. "@"
        .. string.rep("d", 60) .. "." .. string.rep("d", 60) .. "."
        .. string.rep("d", 60) .. "." .. string.rep("d", 7) .. ".com" },
      { "a space inside", "a b@example.com" },
      { "a tab inside", "a\tb@example.com" },
      { "a control character", "a\1b@example.com" },
      { "a DEL character", "a\127b@example.com" },
    }
    for _, case in ipairs(invalid) do
      it("rejects " .. case[1] .. " with 400 invalid_data", function()
        if case[1]:find("255", 1, true) then
          assert.equals(255, #case[2])
        end
        local res = subscribe(server, "sold-out", { email = case[2] })
        helpers.assert_error(res, 400, "invalid_data")
        assert.equals(0, list(server, { variant_id = "sold-out" }).count)
      end)
    end

    it("rejects a bad email in a form body", function()
      local res = subscribe_form(server, "sold-out", "email=not-an-email")
      helpers.assert_error(res, 400, "invalid_data")
    end)

    it("rejects an email that is not UTF-8, and keeps one that is", function()
      -- A form body can carry any byte (%FF); JSON cannot.
      local res = subscribe_form(server, "sold-out", "email=%FF%40example.com")
      helpers.assert_error(res, 400, "invalid_data")
      res = subscribe_form(server, "sold-out", "email=anna%40ex%C3%A4mple.com")
      helpers.assert_status(res, 201)
      -- The domain is stored as IDNA A-labels (docs/security.md).
      assert.equals("anna@xn--exmple-cua.com", res.json.restock_notification.email)
      assert.equals(1, list(server, { variant_id = "sold-out" }).count)
    end)

    it("rejects a missing email", function()
      helpers.assert_error(subscribe(server, "sold-out", {}), 400,
        "invalid_data")
      helpers.assert_error(subscribe(server, "sold-out",
        { name = "Alice" }), 400, "invalid_data")
      helpers.assert_error(subscribe_form(server, "sold-out", "name=Alice"),
        400, "invalid_data")
    end)

    it("rejects an email that is not a string", function()
      helpers.assert_error(subscribe(server, "sold-out", { email = 42 }), 400,
        "invalid_data")
      helpers.assert_error(subscribe(server, "sold-out", '{"email":null}'),
        400, "invalid_data")
      helpers.assert_error(subscribe(server, "sold-out",
        { email = { "a@example.com" } }), 400, "invalid_data")
    end)

    it("rejects bad JSON", function()
      helpers.assert_error(subscribe(server, "sold-out", '{"email":'), 400,
        "invalid_data")
      helpers.assert_error(subscribe(server, "sold-out", "not json"), 400,
        "invalid_data")
    end)

    it("rejects an empty body", function()
      helpers.assert_error(subscribe(server, "sold-out", ""), 400,
        "invalid_data")
    end)

    it("rejects a JSON body that is not an object", function()
      helpers.assert_error(subscribe(server, "sold-out",
        '["a@example.com"]'), 400, "invalid_data")
      helpers.assert_error(subscribe(server, "sold-out",
        '"a@example.com"'), 400, "invalid_data")
    end)
  end)

  describe("a variant in stock", function()
    for _, id in ipairs({ "in-stock", "unmanaged", "backorder" }) do
      it("refuses " .. id .. " with 400 not_allowed", function()
        local res = subscribe(server, id, { email = "alice@example.com" })
        helpers.assert_error(res, 400, "not_allowed", NOT_SOLD_OUT)
        assert.equals(0, list(server, { variant_id = id }).count)
      end)
    end

    it("refuses once stock arrives and accepts once it is gone", function()
      assert_subscribed(subscribe(server, "sold-out",
        { email = "a@example.com" }), "sold-out", "a@example.com")
      helpers.assert_status(admin(server, "POST", "/admin/variants/sold-out",
        { inventory_quantity = 2 }), 200)
      helpers.assert_error(subscribe(server, "sold-out",
        { email = "b@example.com" }), 400, "not_allowed", NOT_SOLD_OUT)
      helpers.assert_status(admin(server, "POST", "/admin/variants/sold-out",
        { inventory_quantity = 0 }), 200)
      assert_subscribed(subscribe(server, "sold-out",
        { email = "b@example.com" }), "sold-out", "b@example.com")
    end)
  end)

  describe("an unknown variant", function()
    it("answers 404 not_found naming the id", function()
      local res = subscribe(server, "ghost", { email = "alice@example.com" })
      helpers.assert_error(res, 404, "not_found",
        "Variant with id: ghost was not found")
    end)

    it("names the decoded id", function()
      local res = subscribe(server, "no such", { email = "alice@example.com" })
      helpers.assert_error(res, 404, "not_found",
        "Variant with id: no such was not found")
    end)
  end)

  describe("sales channels and publishable keys", function()
    it("rejects an unknown sales_channel_id with 400 invalid_data", function()
      local res = subscribe(server, "sold-out",
        { email = "alice@example.com", sales_channel_id = "sc_unknown" })
      helpers.assert_error(res, 400, "invalid_data")
      assert.equals(0, list(server, { variant_id = "sold-out" }).count)
    end)

    it("rejects an unknown publishable key with 400 invalid_data", function()
      local res = subscribe(server, "sold-out",
        { email = "alice@example.com" },
        { ["x-publishable-api-key"] = "pk_unknown" })
      helpers.assert_error(res, 400, "invalid_data")
      assert.equals(0, list(server, { variant_id = "sold-out" }).count)
    end)

    it("rejects a sales_channel_id that is not a string", function()
      local res = subscribe(server, "sold-out",
        { email = "alice@example.com", sales_channel_id = 7 })
      helpers.assert_error(res, 400, "invalid_data")
    end)
  end)

  describe("ordering", function()
    it("lists subscriptions oldest first", function()
      local emails = { "first@example.com", "second@example.com",
        "third@example.com", "fourth@example.com" }
      for _, e in ipairs(emails) do
        assert_subscribed(subscribe(server, "sold-out", { email = e }),
          "sold-out", e)
      end
      local l = list(server, { variant_id = "sold-out" })
      assert.equals(4, l.count)
      for i, e in ipairs(emails) do
        assert.equals(e, l.restock_notifications[i].email)
      end
    end)
  end)
end)
