-- scripts/webhook.lua end to end (contract section 6): each event it is
-- subscribed to is POSTed as {"event", "data"} JSON with X-Restockd-Event,
-- X-Restockd-Timestamp and X-Restockd-Signature = "sha256=" .. hex
-- HMAC-SHA256(secret, timestamp .. "." .. body). The fake receiver
-- (spec/support/fake_http.py --webhook-secret) recomputes the signature over
-- the raw body it received and records its verdict.
local helpers = require "spec.support.helpers"
local fake_http = require "spec.support.fake_http"
local outbound = require "spec.support.outbound"

local RESTOCKED = "restock-notification.restocked"
local SUBSCRIBED = "restock-notification.subscribed"
local SECRET = "whsec-0123456789abcdef"

local function plugin(setup, options)
  return 'local restock = require "restock"\n'
    .. "restock.options " .. outbound.literal(options or {}) .. "\n"
    .. 'require("webhook").setup ' .. outbound.literal(setup) .. "\n"
end

-- Asserts a signed webhook request for `event` and returns its body.
local function assert_signed(req, event)
  assert.equals("POST", req.method)
  assert.equals("/hooks/restockd", req.path)
  assert.equals(event, req.headers["x-restockd-event"])
  assert.truthy((req.headers["content-type"] or ""):find("application/json",
    1, true))
  local ts = tonumber(req.headers["x-restockd-timestamp"])
  assert.truthy(ts, "no timestamp header")
  assert.truthy(math.abs(ts - os.time()) < 300, "timestamp " .. ts
    .. " is not now")
  local sig = req.headers["x-restockd-signature"] or ""
  assert.truthy(sig:match("^sha256=%x+$") and #sig == 7 + 64,
    "signature header: " .. sig)
  assert.is_true(req.signature_ok, string.format(
    "the signature does not verify: got %s, expected %s", sig,
    tostring(req.signature_expected)))
  assert.equals("table", type(req.json), "body is not JSON: " .. req.body)
  assert.equals(event, req.json.event)
  assert.equals("table", type(req.json.data))
  return req.json
end

describe("scripts/webhook.lua", function()
  after_each(function()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  it("posts signed subscribed and restocked events", function()
    local fake = fake_http.start { "--status", "204", "--webhook-secret",
      SECRET }
    local server = helpers.start { plugin = plugin {
      url = fake.url .. "/hooks/restockd", secret = SECRET,
      events = { SUBSCRIBED, RESTOCKED } } }
    outbound.sold_out(server, "v-hook")
    outbound.subscribe(server, "v-hook", "ann@example.com")

    local reqs = fake:wait_requests(1, 10)
    assert.truthy(reqs, "the webhook got no request\n" .. server:stderr())
    local body = assert_signed(reqs[1], SUBSCRIBED)
    assert.equals("v-hook", body.data.variant_id)
    assert.equals("ann@example.com", body.data.email)
    assert.equals("string", type(body.data.unsubscribe_token))

    outbound.set_quantity(server, "v-hook", 3)
    reqs = fake:wait_requests(2, 10)
    assert.truthy(reqs, "no restocked webhook\n" .. server:stderr())
    body = assert_signed(reqs[2], RESTOCKED)
    assert.equals("v-hook", body.data.variant_id)
    assert.same({ "ann@example.com" }, body.data.emails)

    outbound.wait_events(server, SUBSCRIBED, "delivered", 1)
    local events = outbound.wait_events(server, RESTOCKED, "delivered", 1)
    assert.equals(1, events[1].attempts)
    assert.equals(2, #fake:requests())
  end)

  it("signs with the configured secret only", function()
    -- The same request checked against another secret must not verify:
    -- the verdict means something.
    local fake = fake_http.start { "--webhook-secret",
      "another-secret-entirely" }
    local server = helpers.start { plugin = plugin {
      url = fake.url .. "/hooks/restockd", secret = SECRET,
      events = { SUBSCRIBED } } }
    outbound.sold_out(server, "v-other")
    outbound.subscribe(server, "v-other", "ann@example.com")
    local reqs = fake:wait_requests(1, 10)
    assert.truthy(reqs, "the webhook got no request\n" .. server:stderr())
    assert.is_false(reqs[1].signature_ok)
  end)

  it("subscribes to restocked events only by default", function()
    local fake = fake_http.start { "--webhook-secret", SECRET }
    local server = helpers.start { plugin = plugin {
      url = fake.url .. "/hooks/restockd", secret = SECRET } }
    outbound.sold_out(server, "v-default")
    outbound.subscribe(server, "v-default", "ann@example.com")
    outbound.set_quantity(server, "v-default", 1)
    local reqs = fake:wait_requests(1, 10)
    assert.truthy(reqs, "the webhook got no request\n" .. server:stderr())
    outbound.wait_events(server, RESTOCKED, "delivered", 1)
    reqs = fake:requests()
    assert.equals(1, #reqs)
    assert_signed(reqs[1], RESTOCKED)
  end)

  it("retries after a 503", function()
    local fake = fake_http.start { "--webhook-secret", SECRET,
      "--fail-first", "1", "--fail-status", "503" }
    local server = helpers.start { plugin = plugin {
      url = fake.url .. "/hooks/restockd", secret = SECRET } }
    outbound.sold_out(server, "v-retry")
    outbound.subscribe(server, "v-retry", "ann@example.com")
    outbound.set_quantity(server, "v-retry", 1)
    local events = outbound.wait_events(server, RESTOCKED, "delivered", 1, 10)
    assert.equals(2, events[1].attempts)
    local reqs = fake:requests()
    assert.equals(2, #reqs)
    assert.equals(503, reqs[1].status)
    -- Each attempt is signed afresh.
    assert_signed(reqs[1], RESTOCKED)
    assert_signed(reqs[2], RESTOCKED)
  end)

  it("marks the delivery dead at once on a 410", function()
    local fake = fake_http.start { "--webhook-secret", SECRET, "--status",
      "410", "--body", "gone for good" }
    local server = helpers.start { plugin = plugin {
      url = fake.url .. "/hooks/restockd", secret = SECRET } }
    outbound.sold_out(server, "v-gone")
    outbound.subscribe(server, "v-gone", "ann@example.com")
    outbound.set_quantity(server, "v-gone", 1)
    local events = outbound.wait_events(server, RESTOCKED, "dead", 1, 10)
    assert.equals(1, events[1].attempts)
    assert.truthy(tostring(events[1].last_error):find("410", 1, true),
      "last_error: " .. tostring(events[1].last_error))
    assert.equals(1, #fake:requests())
  end)

  it("refuses to load with a short secret", function()
    local dir = helpers.tmpdir()
    local path = dir .. "/plugin.lua"
    helpers.write_file(path, plugin { url = "http://127.0.0.1:1/hook",
      secret = "short" })
    local rc, _, stderr = helpers.run({ "check", "--config", path })
    assert.equals(2, rc)
    assert.truthy(stderr:find("secret", 1, true), stderr)
  end)
end)
