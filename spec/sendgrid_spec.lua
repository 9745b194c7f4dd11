-- scripts/sendgrid.lua end to end (contract section 6): restockd runs the
-- shipped script against a fake SendGrid (spec/support/fake_http.py) that
-- records every mail/send request. One personalization per recipient, at
-- most 1,000 per request; 429 and 5xx answers are retried with backoff,
-- other 4xx answers kill the delivery at once with SendGrid's error text in
-- the log; the server keeps answering while SendGrid is slow.
local socket = require "socket"
local helpers = require "spec.support.helpers"
local fake_http = require "spec.support.fake_http"
local outbound = require "spec.support.outbound"

local RESTOCKED = "restock-notification.restocked"
local SUBSCRIBED = "restock-notification.subscribed"
local API_KEY = "SG.test-key.0123456789"
local FROM = "shop@example.com"
local TEMPLATE = "d-0123456789abcdef"

-- A plugin enabling the shipped script with extra options and setup keys.
local function plugin(options, setup)
  local s = { from = FROM, template_id = TEMPLATE }
  for k, v in pairs(setup or {}) do
    s[k] = v
  end
  return 'local restock = require "restock"\n'
    .. "restock.options " .. outbound.literal(options or {}) .. "\n"
    .. 'require("sendgrid").setup ' .. outbound.literal(s) .. "\n"
end

-- Starts restockd with the script pointed at the fake (`extra`: more of
-- the plugin, after the setup).
local function start(fake, options, setup, extra)
  return helpers.start {
    plugin = plugin(options, setup) .. (extra or ""),
    env = { SENDGRID_API_KEY = API_KEY, SENDGRID_API_URL = fake.url },
  }
end

-- Asserts that one request is a well-formed mail/send call and returns
-- its recipients.
local function assert_mail_send(req, variant_id)
  assert.equals("POST", req.method)
  assert.equals("/v3/mail/send", req.path)
  assert.equals("Bearer " .. API_KEY, req.headers["authorization"])
  assert.truthy((req.headers["content-type"] or ""):find("application/json",
    1, true), "content-type: " .. tostring(req.headers["content-type"]))
  assert.equals("table", type(req.json), "body is not JSON: " .. req.body)
  assert.equals(FROM, req.json.from.email)
  assert.equals(TEMPLATE, req.json.template_id)
  for i, p in ipairs(req.json.personalizations) do
    assert.equals(1, #p.to, "personalization " .. i .. " has " .. #p.to
      .. " recipients")
    local data = p.dynamic_template_data
    assert.equals("table", type(data), "no dynamic_template_data")
    assert.equals(variant_id, data.variant.id)
    assert.equals(p.to[1].email, data.email)
  end
  return req.recipients
end

describe("scripts/sendgrid.lua", function()
  after_each(function()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  it("sends one request with a personalization per subscriber", function()
    local fake = fake_http.start()
    local server = start(fake)
    outbound.sold_out(server, "v-three")
    local emails = { "ann@example.com", "bob@example.com", "cy@example.com" }
    for _, e in ipairs(emails) do
      outbound.subscribe(server, "v-three", e)
    end
    outbound.set_quantity(server, "v-three", 5)

    local reqs = fake:wait_requests(1, 10)
    assert.truthy(reqs, "SendGrid got no request\n" .. server:stderr())
    local recipients = assert_mail_send(reqs[1], "v-three")
    assert.equals(3, reqs[1].personalizations)
    assert.same({ 1, 1, 1 }, reqs[1].to_counts)
    assert.same(emails, recipients)
    local variant = reqs[1].json.personalizations[1].dynamic_template_data
      .variant
    assert.equals("Variant v-three", variant.title)
    assert.equals(5, variant.inventory_quantity)

    local events = outbound.wait_events(server, RESTOCKED, "delivered", 1)
    assert.equals(1, #events)
    assert.equals(1, events[1].attempts)
    -- Delivered means done: no second request was made.
    assert.equals(1, #fake:requests())
  end)

  it("sends a confirmation mail on subscribe when asked to", function()
    local fake = fake_http.start()
    local server = start(fake, {}, { confirm = true,
      unsubscribe_url = "https://shop.example.com/unsubscribe?token=%s" })
    outbound.sold_out(server, "v-confirm")
    outbound.subscribe(server, "v-confirm", "Dee@Example.com")

    local reqs = fake:wait_requests(1, 10)
    assert.truthy(reqs, "SendGrid got no request\n" .. server:stderr())
    local req = reqs[1]
    assert.equals("/v3/mail/send", req.path)
    assert.equals("Bearer " .. API_KEY, req.headers["authorization"])
    assert.equals(1, req.personalizations)
    assert.same({ "dee@example.com" }, req.recipients)
    local data = req.json.personalizations[1].dynamic_template_data
    assert.equals("v-confirm", data.variant.id)
    local event = outbound.wait_events(server, SUBSCRIBED, "delivered", 1)[1]
    assert.equals(
      "https://shop.example.com/unsubscribe?token=" .. event.data
        .unsubscribe_token, data.unsubscribe_url)
  end)

  describe("2,500 subscribers", function()
    local emails = outbound.emails("bulk", 2500)

    -- Every request's recipients, checked and merged; each must be a
    -- subscriber, and each subscriber must appear exactly once.
    local function assert_each_once(reqs, variant_id)
      local seen, total = {}, 0
      local wanted = {}
      for _, e in ipairs(emails) do
        wanted[e] = true
      end
      for _, req in ipairs(reqs) do
        assert.truthy(req.personalizations <= 1000, "a request carries "
          .. req.personalizations .. " personalizations")
        for _, r in ipairs(assert_mail_send(req, variant_id)) do
          assert.truthy(wanted[r], "unexpected recipient " .. tostring(r))
          assert.is_nil(seen[r], r .. " got the mail twice")
          seen[r] = true
          total = total + 1
        end
      end
      assert.equals(#emails, total)
    end

    it("go out as three events of at most 1000 by default", function()
      local fake = fake_http.start()
      local server = start(fake)
      outbound.sold_out(server, "v-bulk")
      outbound.subscribe_many(server, "v-bulk", emails)
      outbound.set_quantity(server, "v-bulk", 10)

      local events = outbound.wait_events(server, RESTOCKED, "delivered", 3,
        20)
      assert.equals(3, #events)
      local reqs = fake:requests()
      assert.equals(3, #reqs)
      local sizes = {}
      for i, req in ipairs(reqs) do
        sizes[i] = req.personalizations
      end
      table.sort(sizes)
      assert.same({ 500, 1000, 1000 }, sizes)
      assert_each_once(reqs, "v-bulk")
    end)

    it("are split by the script into part events of at most 1000 when "
      .. "batch_size is 2500", function()
      local fake = fake_http.start()
      local server = start(fake, { batch_size = 2500 })
      outbound.sold_out(server, "v-split")
      outbound.subscribe_many(server, "v-split", emails)
      outbound.set_quantity(server, "v-split", 10)

      local events = outbound.wait_events(server, RESTOCKED, "delivered", 1,
        20)
      assert.equals(1, #events)
      assert.equals(2500, #events[1].data.emails)
      assert.equals(1, events[1].attempts)
      local parts = outbound.wait_events(server, "sendgrid.restocked-part",
        "delivered", 3, 20)
      assert.equals(3, #parts)
      local reqs = fake:wait_requests(3)
      assert.equals(3, #reqs)
      -- The parts go out side by side: order them by their first recipient.
      local index = {}
      for i, e in ipairs(emails) do
        index[e] = i
      end
      table.sort(reqs, function(a, b)
        return index[a.recipients[1]] < index[b.recipients[1]]
      end)
      assert.same({ 1000, 1000, 500 }, { reqs[1].personalizations,
        reqs[2].personalizations, reqs[3].personalizations })
      assert_each_once(reqs, "v-split")
      -- In subscription order.
      assert.equals(emails[1], reqs[1].recipients[1])
      assert.equals(emails[1001], reqs[2].recipients[1])
      assert.equals(emails[2500], reqs[3].recipients[500])
    end)

    it("retry only the part that failed", function()
      local fake = fake_http.start { "--fail-first", "1", "--fail-status",
        "503" }
      local server = start(fake, { batch_size = 2500 })
      outbound.sold_out(server, "v-part")
      outbound.subscribe_many(server, "v-part", emails)
      outbound.set_quantity(server, "v-part", 10)

      local parts = outbound.wait_events(server, "sendgrid.restocked-part",
        "delivered", 3, 20)
      local attempts = {}
      for i, p in ipairs(parts) do
        attempts[i] = p.attempts
      end
      table.sort(attempts)
      assert.same({ 1, 1, 2 }, attempts)
      local reqs = fake:wait_requests(4)
      assert.equals(4, #reqs)
      local sent = {}
      for _, req in ipairs(reqs) do
        if req.status == 202 then
          sent[#sent + 1] = req
        end
      end
      assert.equals(3, #sent)
      assert_each_once(sent, "v-part")
    end)
  end)

  for _, status in ipairs({ 500, 429 }) do
    it("retries after a " .. status .. " and delivers once", function()
      local fake = fake_http.start { "--fail-first", "1", "--fail-status",
        tostring(status), "--fail-body", '{"errors":[{"message":"busy"}]}' }
      local server = start(fake)
      outbound.sold_out(server, "v-retry")
      outbound.subscribe(server, "v-retry", "ann@example.com")
      outbound.subscribe(server, "v-retry", "bob@example.com")
      outbound.set_quantity(server, "v-retry", 1)

      local events = outbound.wait_events(server, RESTOCKED, "delivered", 1,
        10)
      assert.equals(2, events[1].attempts)
      local reqs = fake:requests()
      assert.equals(2, #reqs)
      assert.equals(status, reqs[1].status)
      assert.equals(202, reqs[2].status)
      assert.same(reqs[1].recipients, reqs[2].recipients)
      assert.same({ "ann@example.com", "bob@example.com" },
        reqs[2].recipients)
      -- The retry waited for the backoff (1 s).
      assert.truthy(reqs[2].time - reqs[1].time >= 0.9, string.format(
        "retried after %.3f s", reqs[2].time - reqs[1].time))
      assert.truthy(server:stderr():find("SendGrid answered " .. status, 1,
        true), "the failure is not logged:\n" .. server:stderr())
    end)
  end

  it("gives up at once on a 400 and logs SendGrid's error", function()
    local message = "The from address does not match a verified Sender "
      .. "Identity"
    local fake = fake_http.start { "--status", "400", "--body",
      '{"errors":[{"message":"' .. message .. '","field":"from",'
        .. '"help":null}]}' }
    local server = start(fake)
    outbound.sold_out(server, "v-bad")
    outbound.subscribe(server, "v-bad", "ann@example.com")
    outbound.set_quantity(server, "v-bad", 1)

    local events = outbound.wait_events(server, RESTOCKED, "dead", 1, 10)
    assert.equals(1, events[1].attempts)
    assert.truthy(tostring(events[1].last_error):find(message, 1, true),
      "last_error: " .. tostring(events[1].last_error))
    local stderr = helpers.wait_stderr(server,
      "sendgrid: SendGrid answered 400: ", 2)
    assert.truthy(stderr, "no sendgrid error line:\n" .. server:stderr())
    assert.truthy(stderr:find(message, 1, true),
      "the log lacks SendGrid's text:\n" .. stderr)
    assert.equals(1, #fake:requests())
  end)

  it("keeps answering /health while SendGrid holds its answer", function()
    local fake = fake_http.start { "--delay", "2" }
    local server = start(fake)
    outbound.sold_out(server, "v-slow")
    outbound.subscribe(server, "v-slow", "ann@example.com")
    outbound.set_quantity(server, "v-slow", 1)

    local reqs = fake:wait_requests(1, 10)
    assert.truthy(reqs, "SendGrid got no request\n" .. server:stderr())
    -- /health over and over, for as long as the answer is still held: a
    -- loop waiting on SendGrid would answer none of them.
    local answered = 0
    while #fake:records("done") == 0 and answered < 1000000 do
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
      answered = answered + 1
    end
    assert.truthy(answered >= 5, "only " .. answered
      .. " answers while SendGrid held its answer")
    local events = outbound.wait_events(server, RESTOCKED, "delivered", 1,
      10)
    assert.equals(1, events[1].attempts)
  end)

  it("refuses to load without an API key", function()
    local dir = helpers.tmpdir()
    local path = dir .. "/plugin.lua"
    helpers.write_file(path, plugin())
    local rc, _, stderr = helpers.run({ "check", "--config", path },
      { SENDGRID_API_KEY = "" })
    assert.equals(2, rc)
    assert.truthy(stderr:find("SENDGRID_API_KEY", 1, true), stderr)
  end)
end)

-- One-click unsubscribe in every SendGrid mail (RFC 8058), from the
-- subscribers' tokens as the lifecycle work's restocked events carry them
-- (seeded by spec/support/senders.lua).
describe("scripts/sendgrid.lua one-click unsubscribe", function()
  local senders = require "spec.support.senders"

  after_each(function()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  local function start_seeded(fake, setup, n)
    local s = { from = FROM, public_url = senders.PUBLIC }
    for k, v in pairs(setup) do
      s[k] = v
    end
    return helpers.start {
      plugin = senders.plugin('require("sendgrid").setup '
        .. outbound.literal(s), n),
      env = { SENDGRID_API_KEY = API_KEY, SENDGRID_API_URL = fake.url },
    }
  end

  it("puts List-Unsubscribe in each personalization", function()
    local fake = fake_http.start()
    local emails = { "ann@example.com", "bob@example.com" }
    local server = start_seeded(fake, { template_id = TEMPLATE }, #emails)
    local tokens = senders.subscribe_all(server, "v-sg", emails)
    local reqs = fake:wait_requests(1, 10)
    assert.truthy(reqs, server:stderr())
    local ps = reqs[1].json.personalizations
    assert.equals(2, #ps)
    for _, p in ipairs(ps) do
      local email = p.to[1].email
      local url = senders.unsubscribe_url(tokens[email])
      assert.equals("<" .. url .. ">", p.headers["List-Unsubscribe"])
      assert.equals("List-Unsubscribe=One-Click",
        p.headers["List-Unsubscribe-Post"])
      assert.equals(url, p.dynamic_template_data.unsubscribe_url)
      assert.equals(senders.PUBLIC .. "/restock-notifications/mine?token="
        .. helpers.urlencode("manage-" .. email),
        p.dynamic_template_data.manage_url)
    end
  end)

  it("without a template, sends the shared templates with the links as "
    .. "substitutions", function()
    local fake = fake_http.start()
    local emails = { "ann@example.com", "bob@example.com" }
    local server = start_seeded(fake, {}, #emails)
    local tokens = senders.subscribe_all(server, "v-sg2", emails,
      { title = "Red <hat>" })
    local reqs = fake:wait_requests(1, 10)
    assert.truthy(reqs, server:stderr())
    local j = reqs[1].json
    assert.is_nil(j.template_id)
    assert.equals("Back in stock: Red <hat>", j.subject)
    assert.equals("text/plain", j.content[1].type)
    assert.equals("text/html", j.content[2].type)
    local text, html = j.content[1].value, j.content[2].value
    assert.truthy(text:find("No more mails like this one: "
      .. "-restockUnsubscribeUrl-", 1, true), text)
    assert.truthy(html:find('href="-restockUnsubscribeUrl-"', 1, true))
    assert.truthy(html:find("Red &lt;hat&gt;", 1, true))
    for _, p in ipairs(j.personalizations) do
      local email = p.to[1].email
      assert.equals(senders.unsubscribe_url(tokens[email]),
        p.substitutions["-restockUnsubscribeUrl-"])
      assert.equals("<" .. senders.unsubscribe_url(tokens[email]) .. ">",
        p.headers["List-Unsubscribe"])
    end
  end)

  -- A restocked event (here a part event a script emits) whose subscribers
  -- are not in the order of its emails: each mail still gets its own
  -- shopper's links, found by email.
  it("gives each personalization its own shopper's links when the "
    .. "subscribers are out of order", function()
    local fake = fake_http.start()
    local server = start(fake, {}, { public_url = "https://shop.example" }, [[
restock.subscribe("]] .. SUBSCRIBED .. [[", function(data)
  local ok, err = restock.emit("sendgrid.restocked-part", {
    variant_id = data.variant_id,
    emails = { "ann@example.com", "bob@example.com", "cy@example.com" },
    subscribers = {
      { email = "bob@example.com", manage_token = "m-bob",
        unsubscribe_token = "u-bob" },
      { email = "ann@example.com", manage_token = "m-ann",
        unsubscribe_token = "u-ann" },
    },
  })
  assert(ok, err)
end, { name = "emit-part" })
]])
    outbound.sold_out(server, "v-order")
    helpers.assert_status(helpers.request(server, "POST",
      "/restock-notifications/variants/v-order",
      { json = { email = "trigger@example.com" } }), 201)
    local reqs = fake:wait_requests(1, 10)
    assert.truthy(reqs, server:stderr())
    local by_email = {}
    for _, p in ipairs(reqs[1].json.personalizations) do
      by_email[p.to[1].email] = p.dynamic_template_data
    end
    assert.equals("https://shop.example/restock-notifications/mine?token=m-ann",
      by_email["ann@example.com"].manage_url)
    assert.equals("https://shop.example/restock-notifications/mine?token=m-bob",
      by_email["bob@example.com"].manage_url)
    -- No entry at all: the mail goes out without the shopper's links.
    assert.truthy(by_email["cy@example.com"])
    assert.is_nil(by_email["cy@example.com"].manage_url)
  end)
end)

describe("scripts/sendgrid.lua per locale and under double opt-in", function()
  after_each(function()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  local PUBLIC = "https://restock.example.com"

  local function subscribe(server, email, locale)
    local res = helpers.request(server, "POST",
      "/restock-notifications/variants/v-loc",
      { json = { email = email, locale = locale } })
    helpers.assert_status(res, 201)
  end

  it("sends each shopper the template of their locale, one request each",
    function()
      local fake = fake_http.start()
      local server = start(fake, {}, { public_url = PUBLIC,
        template_ids = { de = "d-german", ["PT-br"] = "d-brazil" } })
      outbound.sold_out(server, "v-loc")
      subscribe(server, "de@example.com", "de-AT")     -- its language
      subscribe(server, "plain@example.com", nil)      -- the fallback
      subscribe(server, "br@example.com", "pt-BR")     -- exact, any case
      subscribe(server, "fr@example.com", "fr")        -- none: fallback
      subscribe(server, "de2@example.com", "de")
      outbound.set_quantity(server, "v-loc", 9)
      local reqs = fake:wait_requests(3, 10)
      assert.truthy(reqs, "not 3 requests\n" .. server:stderr())
      socket.sleep(0.3)
      reqs = fake:requests()
      assert.equals(3, #reqs)
      local by_template = {}
      for _, r in ipairs(reqs) do
        by_template[r.json.template_id] = r.recipients
        for _, p in ipairs(r.json.personalizations) do
          assert.truthy(p.dynamic_template_data.manage_url:find(PUBLIC
            .. "/restock-notifications/mine?token=", 1, true))
        end
      end
      assert.same({ "de@example.com", "de2@example.com" },
        by_template["d-german"])
      assert.same({ "br@example.com" }, by_template["d-brazil"])
      assert.same({ "plain@example.com", "fr@example.com" },
        by_template[TEMPLATE])
      -- The three parts were delivered, and the event with them.
      outbound.wait_events(server, RESTOCKED, "delivered", 1)
    end)

  it("mails the confirmation link under double opt-in, and it confirms",
    function()
      local fake = fake_http.start()
      local server = start(fake, { double_opt_in = true }, {
        public_url = PUBLIC, confirmation_template_id = "d-confirm",
        confirmation_template_ids = { de = "d-bestaetigen" } })
      outbound.sold_out(server, "v-loc")
      subscribe(server, "ann@example.com", nil)
      subscribe(server, "udo@example.com", "de")
      local reqs = fake:wait_requests(2, 10)
      assert.truthy(reqs, server:stderr())
      local by_email = {}
      for _, r in ipairs(reqs) do
        local p = r.json.personalizations[1]
        by_email[p.to[1].email] = { template = r.json.template_id,
          data = p.dynamic_template_data, headers = p.headers }
      end
      assert.equals("d-confirm", by_email["ann@example.com"].template)
      assert.equals("d-bestaetigen", by_email["udo@example.com"].template)
      local d = by_email["ann@example.com"].data
      assert.truthy(d.manage_url:find("/restock-notifications/mine?token=",
        1, true))
      assert.truthy(by_email["ann@example.com"].headers["List-Unsubscribe"])
      local token = d.confirm_url:match("^" .. PUBLIC:gsub("%p", "%%%0")
        .. "/restock%-notifications/confirm%?token=(.+)$")
      assert.truthy(token, d.confirm_url)
      -- The link, as the shopper opens it.
      local res = helpers.request(server, "GET",
        "/restock-notifications/confirm?token=" .. token)
      helpers.assert_status(res, 200)
      local list = helpers.admin(server, "GET", "/admin/restock-notifications")
      assert.equals(1, list.json.count)
      assert.equals("ann@example.com",
        list.json.restock_notifications[1].email)
    end)

  it("without a template, sends the shared confirmation mail", function()
    local fake = fake_http.start()
    local server = helpers.start {
      plugin = 'local restock = require "restock"\n'
        .. "restock.options { double_opt_in = true }\n"
        .. 'require("sendgrid").setup { from = "' .. FROM .. '", '
        .. 'public_url = "' .. PUBLIC .. '" }\n',
      env = { SENDGRID_API_KEY = API_KEY, SENDGRID_API_URL = fake.url },
    }
    outbound.sold_out(server, "v-loc")
    subscribe(server, "ann@example.com", nil)
    local req = fake:wait_requests(1, 10)
    assert.truthy(req, server:stderr())
    local j = req[1].json
    assert.is_nil(j.template_id)
    assert.truthy(j.subject and #j.subject > 0)
    local text = j.content[1].value
    assert.truthy(text:find(PUBLIC .. "/restock-notifications/confirm?token=",
      1, true), text)
  end)
end)
