-- Internationalized email addresses (issue 13): one mailbox written in two
-- cases is one subscription, and erasing it in the other case finds it.
-- The local part is NFC and lower-cased by Unicode's rules; the domain is
-- folded by UTS #46 and stored, and given to handlers, as A-labels
-- (docs/security.md says why).
local helpers = require "spec.support.helpers"

local admin = helpers.admin

local UPPER = "\u{dc}@EX\u{c4}MPLE.DE" -- Ü@EXÄMPLE.DE
local LOWER = "\u{fc}@ex\u{e4}mple.de" -- ü@exämple.de
local STORED = "\u{fc}@xn--exmple-cua.de"

local function subscribe(server, email, variant)
  return helpers.request(server, "POST",
    "/restock-notifications/variants/" .. (variant or "v"),
    { json = { email = email } })
end

local function active(server, query)
  local res = admin(server, "GET", "/admin/restock-notifications"
    .. helpers.query(query or {}))
  helpers.assert_status(res, 200)
  return res.json
end

describe("internationalized emails", function()
  after_each(helpers.cleanup)

  local server, rec
  before_each(function()
    local dir = helpers.tmpdir()
    rec = dir .. "/records.jsonl"
    server = helpers.start { dir = dir,
      plugin = helpers.recorder_plugin(rec) .. [[
restock.subscribe("restock-notification.subscribed", function(data)
  record("subscribed", data.email)
end)
]] }
    helpers.assert_status(admin(server, "POST", "/admin/variants",
      { id = "v", inventory_quantity = 0 }), 200)
  end)

  it("stores one subscription for one mailbox in two cases", function()
    local first = subscribe(server, UPPER)
    helpers.assert_status(first, 201)
    assert.equals(STORED, first.json.restock_notification.email)
    local second = subscribe(server, LOWER)
    helpers.assert_status(second, 201)
    assert.equals(STORED, second.json.restock_notification.email)
    -- Decomposed (NFD, as some keyboards send it) and A-label spellings
    -- are the same mailbox too.
    helpers.assert_status(subscribe(server, "u\u{308}@exa\u{308}mple.de"), 201)
    helpers.assert_status(subscribe(server, "\u{dc}@xn--exmple-cua.DE"), 201)
    local list = active(server)
    assert.equals(1, list.count)
    assert.equals(STORED, list.restock_notifications[1].email)
    -- The handler was given the stored form, once.
    local records = helpers.wait_records(rec, "subscribed", 1)
    assert.truthy(records, "no subscribed event reached the handler")
    assert.equals(STORED, records[1].data)
    -- The admin filter finds it in any spelling.
    assert.equals(1, active(server, { email = UPPER }).count)
    assert.equals(1, active(server, { email = LOWER }).count)
  end)

  it("erases a subscription given in the other case", function()
    helpers.assert_status(subscribe(server, UPPER), 201)
    helpers.assert_status(subscribe(server, LOWER, "v"), 201)
    local res = admin(server, "DELETE", "/admin/restock-notifications"
      .. helpers.query({ email = LOWER }))
    helpers.assert_status(res, 200)
    assert.same({ deleted = 1 }, res.json)
    assert.equals(0, active(server).count)

    helpers.assert_status(subscribe(server, LOWER), 201)
    res = admin(server, "DELETE", "/admin/restock-notifications"
      .. helpers.query({ email = UPPER }))
    assert.same({ deleted = 1 }, res.json)
    assert.equals(0, active(server).count)
  end)

  it("refuses domains that IDNA refuses with 400 invalid_data", function()
    local bad = {
      "a@xn--zz.com",                  -- Punycode that does not decode
      "a@exa\u{2615}mple.com",         -- a disallowed code point (U+2615)
      "a@\u{301}example.com",          -- a leading combining mark
      "a@ab\u{5d0}.com",               -- Hebrew after Latin: the bidi rule
    }
    for _, email in ipairs(bad) do
      local res = subscribe(server, email)
      helpers.assert_error(res, 400, "invalid_data")
      assert.truthy(res.json.message:find("internationalized", 1, true),
        email .. ": " .. res.json.message)
    end
    -- Nor are they erasable names of someone.
    local res = admin(server, "DELETE", "/admin/restock-notifications"
      .. helpers.query({ email = "a@xn--zz.com" }))
    helpers.assert_error(res, 400, "invalid_data")
    assert.equals(0, active(server).count)
  end)

  it("refuses invisible characters in the local part", function()
    for _, email in ipairs({ "a\u{202e}b@example.com", "a\u{200b}b@example.com",
        "a\u{a0}b@example.com" }) do
      helpers.assert_error(subscribe(server, email), 400, "invalid_data")
    end
    assert.equals(0, active(server).count)
  end)
end)
