-- One-click unsubscribe (RFC 8058): a mailbox provider POSTs the URL of a
-- mail's List-Unsubscribe header with the body "List-Unsubscribe=One-Click"
-- (form-encoded, or multipart/form-data), the token in the query, no
-- cookies and no Accept for HTML. restockd answers 200 and the
-- subscription is gone; a bad token still answers 400.
local helpers = require "spec.support.helpers"
local outbound = require "spec.support.outbound"

local SUBSCRIBED = "restock-notification.subscribed"

-- A server with one subscription per email; returns it and the tokens.
local function start(emails)
  local server = helpers.start {
    plugin = 'local restock = require "restock"\n'
      .. 'restock.subscribe("' .. SUBSCRIBED .. '", function() end)\n',
  }
  outbound.sold_out(server, "v-oc")
  for _, e in ipairs(emails) do
    outbound.subscribe(server, "v-oc", e)
  end
  local tokens = {}
  for _, ev in ipairs(outbound.wait_events(server, SUBSCRIBED, "delivered",
    #emails)) do
    tokens[ev.data.email] = ev.data.unsubscribe_token
  end
  return server, tokens
end

local function active(server)
  return helpers.admin(server, "GET",
    "/admin/restock-notifications?variant_id=v-oc").json.count
end

describe("POST /restock-notifications/unsubscribe, one-click", function()
  after_each(function()
    helpers.cleanup()
  end)

  it("takes the RFC 8058 body with the token in the query", function()
    local server, tokens = start({ "ann@example.com", "bob@example.com",
      "cy@example.com" })
    local function click(email, ctype, body)
      return helpers.request(server, "POST",
        "/restock-notifications/unsubscribe?token="
          .. helpers.urlencode(tokens[email]),
        { headers = { ["Content-Type"] = ctype }, body = body })
    end
    local res = click("ann@example.com", "application/x-www-form-urlencoded",
      "List-Unsubscribe=One-Click")
    helpers.assert_status(res, 200)
    assert.same({ unsubscribed = true }, res.json)
    assert.truthy(res.headers["content-type"]:find("application/json", 1,
      true))
    assert.equals(2, active(server))
    local boundary = "----restockd-spec"
    res = click("bob@example.com", "multipart/form-data; boundary=" .. boundary,
      "--" .. boundary .. "\r\nContent-Disposition: form-data; "
        .. "name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--" .. boundary
        .. "--\r\n")
    helpers.assert_status(res, 200)
    assert.equals(1, active(server))
    -- A second click (providers retry) is no error.
    res = click("ann@example.com", "application/x-www-form-urlencoded",
      "List-Unsubscribe=One-Click")
    helpers.assert_status(res, 200)
    assert.equals(1, active(server))
  end)

  it("answers 400 for a token that does not verify", function()
    local server, tokens = start({ "ann@example.com" })
    local bad = tokens["ann@example.com"]:sub(1, -3) .. "xx"
    local res = helpers.request(server, "POST",
      "/restock-notifications/unsubscribe?token=" .. helpers.urlencode(bad),
      { headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "List-Unsubscribe=One-Click" })
    helpers.assert_error(res, 400, "invalid_data")
    assert.equals(1, active(server))
  end)
end)
