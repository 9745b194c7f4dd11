-- The subscribed and product-variant.updated events (contract section 3)
-- and the unsubscribe route that takes the token of a subscribed event
-- (section 5): real tokens work in every form, forged ones are refused.
local helpers = require "spec.support.helpers"
local socket = require "socket"

local admin = helpers.admin

local SUBSCRIBED = "restock-notification.subscribed"
local UPDATED = "product-variant.updated"

local function subscribe(server, variant_id, email)
  local res = helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { json = { email = email } })
  helpers.assert_status(res, 201)
end

local function active(server, query)
  query = query or {}
  local res = admin(server, "GET", "/admin/restock-notifications"
    .. helpers.query(query))
  helpers.assert_status(res, 200)
  local t = {}
  for i, n in ipairs(res.json.restock_notifications) do
    t[i] = n.variant_id .. " " .. n.email
  end
  return t
end

-- Waits for the subscribed event of email and returns its data.
local function subscribed_event(rec, email)
  return helpers.wait_for(function()
    for _, r in ipairs(helpers.read_records(rec, "subscribed")) do
      if r.data.email == email then
        return r.data
      end
    end
  end)
end

-- Base64url without padding, for building forged tokens.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local function b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for k = 1, chars do
      local shift = 18 - 6 * (k - 1)
      local idx = (n >> shift) & 63
      out[#out + 1] = B64:sub(idx + 1, idx + 1)
    end
  end
  return table.concat(out)
end

-- The token with the character at i replaced by another base64url one.
local function alter(token, i)
  local c = token:sub(i, i)
  local r = c == "A" and "B" or "A"
  return token:sub(1, i - 1) .. r .. token:sub(i + 1)
end

local function unsubscribe_get(server, token)
  return helpers.request(server, "GET", "/restock-notifications/unsubscribe"
    .. helpers.query({ token = token }))
end

describe("engine events", function()
  after_each(helpers.cleanup)

  describe("restock-notification.subscribed and unsubscribe", function()
    local server, rec
    before_each(function()
      local dir = helpers.tmpdir()
      rec = dir .. "/records.jsonl"
      server = helpers.start { dir = dir,
        plugin = helpers.recorder_plugin(rec) .. [[
restock.subscribe("restock-notification.subscribed", function(data)
  record("subscribed", data)
end)
]] }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { variants = { { id = "v", inventory_quantity = 0 },
          { id = "w", inventory_quantity = 0 } } }), 200)
    end)

    it("is emitted once per new subscription with a token", function()
      subscribe(server, "v", "ann@example.com")
      local data = subscribed_event(rec, "ann@example.com")
      assert.truthy(data, "no subscribed event; stderr:\n" .. server:stderr())
      assert.equals("v", data.variant_id)
      assert.equals("ann@example.com", data.email)
      assert.is_nil(data.sales_channel_id)
      assert.equals("string", type(data.unsubscribe_token))
      assert.truthy(#data.unsubscribe_token > 10)

      -- A duplicate stores nothing and emits nothing; the next new one does.
      subscribe(server, "v", "ann@example.com")
      subscribe(server, "v", "ben@example.com")
      assert.truthy(subscribed_event(rec, "ben@example.com"))
      socket.sleep(0.2)
      local emails = {}
      for _, r in ipairs(helpers.read_records(rec, "subscribed")) do
        emails[#emails + 1] = r.data.email
      end
      assert.same({ "ann@example.com", "ben@example.com" }, emails)
      assert.equals(2, helpers.events(server, { name = SUBSCRIBED }).count)
      assert.truthy(server:stderr():find("Processing " .. SUBSCRIBED
        .. " which has 1 subscribers", 1, true), server:stderr())
    end)

    it("refuses forged tokens and leaves the subscriptions", function()
      subscribe(server, "v", "ann@example.com")
      subscribe(server, "v", "ben@example.com")
      local ann = subscribed_event(rec, "ann@example.com")
      local ben = subscribed_event(rec, "ben@example.com")
      assert.truthy(ann and ben, "no subscribed events; stderr:\n"
        .. server:stderr())
      local t = ann.unsubscribe_token
      local payload, mac = t:match("^([^.]+)%.([^.]+)$")

      local forged = {}
      -- One character changed in the middle of the token, at either end.
      forged[#forged + 1] = alter(t, #t // 2)
      forged[#forged + 1] = alter(t, 3)
      forged[#forged + 1] = alter(t, #t - 5)
      if payload then
        -- ben's payload with ann's signature, and the reverse.
        local bp, bm = ben.unsubscribe_token:match("^([^.]+)%.([^.]+)$")
        forged[#forged + 1] = bp .. "." .. mac
        forged[#forged + 1] = payload .. "." .. bm
        -- A payload naming another email, signed with ann's signature.
        forged[#forged + 1] = b64url("v\n\nmallory@example.com") .. "." .. mac
        forged[#forged + 1] = b64url("v\n\nben@example.com") .. "." .. mac
        -- No signature at all.
        forged[#forged + 1] = payload
        forged[#forged + 1] = payload .. "."
      else
        -- The token has another shape: swap halves of the two tokens.
        local b = ben.unsubscribe_token
        forged[#forged + 1] = b:sub(1, #b // 2) .. t:sub(#t // 2 + 1)
      end
      forged[#forged + 1] = ""
      forged[#forged + 1] = "not a token"

      for _, f in ipairs(forged) do
        if f ~= t and f ~= ben.unsubscribe_token then
          local res = unsubscribe_get(server, f)
          assert.truthy(res.status == 400, "forged token " .. f
            .. " answered " .. helpers.describe(res))
          helpers.assert_error(res, 400, "invalid_data")
          res = helpers.request(server, "POST",
            "/restock-notifications/unsubscribe", { json = { token = f } })
          helpers.assert_error(res, 400, "invalid_data")
        end
      end
      assert.same({ "v ann@example.com", "v ben@example.com" },
        active(server))
    end)

    it("unsubscribes with a real token in every form", function()
      local emails = { "ann@example.com", "ben@example.com",
        "cat@example.com", "dan@example.com" }
      for _, e in ipairs(emails) do
        subscribe(server, "v", e)
      end
      subscribe(server, "w", "ann@example.com")
      local tokens = {}
      for _, e in ipairs(emails) do
        local data = subscribed_event(rec, e)
        assert.truthy(data, "no subscribed event for " .. e)
        tokens[e] = data.unsubscribe_token
      end

      -- GET with the token in the query.
      local res = unsubscribe_get(server, tokens["ann@example.com"])
      helpers.assert_status(res, 200)
      assert.same({ unsubscribed = true }, res.json)
      assert.same({ "v ben@example.com", "v cat@example.com",
        "v dan@example.com", "w ann@example.com" }, active(server))

      -- POST with the token in the query.
      res = helpers.request(server, "POST", "/restock-notifications/unsubscribe"
        .. helpers.query({ token = tokens["ben@example.com"] }))
      helpers.assert_status(res, 200)
      assert.same({ unsubscribed = true }, res.json)

      -- POST with a JSON body.
      res = helpers.request(server, "POST",
        "/restock-notifications/unsubscribe",
        { json = { token = tokens["cat@example.com"] } })
      helpers.assert_status(res, 200)
      assert.same({ unsubscribed = true }, res.json)

      -- POST with a form body.
      res = helpers.request(server, "POST",
        "/restock-notifications/unsubscribe", {
          body = "token=" .. helpers.urlencode(tokens["dan@example.com"]),
          headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        })
      helpers.assert_status(res, 200)
      assert.same({ unsubscribed = true }, res.json)

      -- Only the subscription each token named is gone.
      assert.same({ "w ann@example.com" }, active(server))
    end)
  end)

  describe("product-variant.updated", function()
    -- The fields of the updated events for variant id, each sorted.
    local function updates(rec, id)
      local out = {}
      for _, r in ipairs(helpers.read_records(rec, "updated")) do
        if r.data.id == id then
          local f = {}
          for i, name in ipairs(r.data.fields) do
            f[i] = name
          end
          table.sort(f)
          out[#out + 1] = f
        end
      end
      return out
    end

    local function wait_updates(rec, id, n)
      return helpers.wait_for(function()
        local u = updates(rec, id)
        if #u >= n then
          return u
        end
      end)
    end

    it("names the fields an admin change changed", function()
      local dir = helpers.tmpdir()
      local rec = dir .. "/records.jsonl"
      local server = helpers.start { dir = dir,
        plugin = helpers.recorder_plugin(rec) .. [[
restock.subscribe("product-variant.updated", function(data)
  record("updated", data)
end)
]] }
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { id = "v", product_id = "p", title = "Old", sku = "S-1",
          inventory_quantity = 0 }), 200)

      -- Stock alone.
      helpers.assert_status(admin(server, "POST", "/admin/variants/v",
        { inventory_quantity = 5 }), 200)
      local u = wait_updates(rec, "v", 1)
      assert.truthy(u, "no updated event; stderr:\n" .. server:stderr())
      assert.same({ { "inventory_quantity" } }, u)

      -- Two fields through Medusa's path, one field posted unchanged.
      helpers.assert_status(admin(server, "POST", "/admin/products/p/variants/v",
        { title = "New", inventory_quantity = 7, sku = "S-1" }), 200)
      u = wait_updates(rec, "v", 2)
      assert.truthy(u, "no second updated event")
      assert.same({ "inventory_quantity", "title" }, u[2])

      -- Nothing changed: no event. A batch upsert that changes sku: one.
      helpers.assert_status(admin(server, "POST", "/admin/variants/v",
        { title = "New", inventory_quantity = 7 }), 200)
      helpers.assert_status(admin(server, "POST", "/admin/variants",
        { variants = { { id = "v", sku = "S-2" } } }), 200)
      u = wait_updates(rec, "v", 3)
      assert.truthy(u, "no third updated event")
      socket.sleep(0.2)
      assert.same({ { "inventory_quantity" }, { "inventory_quantity", "title" },
        { "sku" } }, updates(rec, "v"))

      local j = helpers.events(server, { name = UPDATED })
      assert.equals(3, j.count)
      assert.equals("v", j.events[1].data.id)
      assert.same({ "inventory_quantity" }, j.events[1].data.fields)
      assert.truthy(server:stderr():find("Processing " .. UPDATED
        .. " which has 1 subscribers", 1, true), server:stderr())
    end)
  end)
end)
