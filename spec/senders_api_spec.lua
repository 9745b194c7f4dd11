-- scripts/mailgun.lua, postmark.lua and ses.lua end to end, each against a
-- fake of the provider's API built from its public reference
-- (spec/support/fake_mail_api.py), which checks every request exactly: the
-- method, the path, the credentials (Mailgun's basic auth, Postmark's
-- server token, SES's Signature Version 4 recomputed in Python), the
-- fields. Each restocked shopper gets a request of their own, with the
-- one-click unsubscribe headers; each provider's error answers map to a
-- retry or a dead delivery as the scripts' docs say.
local helpers = require "spec.support.helpers"
local fake_http = require "spec.support.fake_http"
local api = require "spec.support.fake_mail_api"
local senders = require "spec.support.senders"

local FROM = "Example Shop <shop@example.com>"

-- Each provider: how to start its fake and the sender, how to read a
-- request's recipient, subject, texts and headers, and which error shapes
-- are retried or dead.
local PROVIDERS = {
  mailgun = {
    fake = { "--key", "key-0123456789", "--domain", "mg.example.com" },
    setup = function(url)
      return string.format([[require("mailgun").setup { domain = "mg.example.com",
        region = "eu", from = %q, public_url = %q, tag = "restock" }]],
        FROM, senders.PUBLIC)
    end,
    env = function(url, wrong)
      return { MAILGUN_API_KEY = wrong and "key-wrong" or "key-0123456789",
        MAILGUN_API_URL = url }
    end,
    read = function(req)
      local f = req.fields
      return { to = f.to[1], from = f.from[1], subject = f.subject[1],
        text = f.text[1], html = f.html[1],
        unsubscribe = f["h:List-Unsubscribe"] and f["h:List-Unsubscribe"][1],
        post = f["h:List-Unsubscribe-Post"]
          and f["h:List-Unsubscribe-Post"][1],
        extra = f["o:tag"] and f["o:tag"][1] }
    end,
    retry = { "rate_limited", "server_error", "unavailable" },
    dead = { "bad_address", "unauthorized", "payment", "not_found" },
  },
  postmark = {
    fake = { "--key", "pm-server-token" },
    setup = function(url)
      return string.format([[require("postmark").setup { from = %q,
        public_url = %q, message_stream = "restock-alerts" }]], FROM,
        senders.PUBLIC)
    end,
    env = function(url, wrong)
      return { POSTMARK_SERVER_TOKEN = wrong and "nope" or "pm-server-token",
        POSTMARK_API_URL = url }
    end,
    read = function(req)
      local j = req.json
      local h = {}
      for _, e in ipairs(j.Headers or {}) do
        h[e.Name] = e.Value
      end
      return { to = j.To, from = j.From, subject = j.Subject,
        text = j.TextBody, html = j.HtmlBody,
        unsubscribe = h["List-Unsubscribe"],
        post = h["List-Unsubscribe-Post"], extra = j.MessageStream }
    end,
    retry = { "rate_limited", "server_error", "maintenance" },
    dead = { "unauthorized", "invalid_request", "inactive_recipient",
      "not_confirmed" },
  },
  ses = {
    fake = { "--key", "AKIDEXAMPLE", "--secret",
      "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "--region", "eu-west-1" },
    setup = function(url)
      return string.format([[require("ses").setup { region = "eu-west-1",
        from = %q, public_url = %q, configuration_set = "restock" }]], FROM,
        senders.PUBLIC)
    end,
    env = function(url, wrong)
      return { AWS_ACCESS_KEY_ID = "AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY = wrong and "not-the-secret"
          or "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        SES_API_URL = url }
    end,
    read = function(req)
      local j = req.json
      local s = j.Content.Simple
      local h = {}
      for _, e in ipairs(s.Headers or {}) do
        h[e.Name] = e.Value
      end
      return { to = j.Destination.ToAddresses[1], from = j.FromEmailAddress,
        subject = s.Subject.Data, text = s.Body.Text and s.Body.Text.Data,
        html = s.Body.Html and s.Body.Html.Data,
        unsubscribe = h["List-Unsubscribe"],
        post = h["List-Unsubscribe-Post"], extra = j.ConfigurationSetName }
    end,
    retry = { "throttled", "throttling", "server_error" },
    dead = { "message_rejected", "not_verified", "paused", "signature" },
  },
}

local EXTRA = { mailgun = "restock", postmark = "restock-alerts",
  ses = "restock" }

for _, name in ipairs({ "mailgun", "postmark", "ses" }) do
  local p = PROVIDERS[name]

  describe("scripts/" .. name .. ".lua", function()
    after_each(function()
      api.cleanup()
      local ok, err = pcall(fake_http.cleanup)
      helpers.cleanup()
      assert(ok, err)
    end)

    local function start(fake, emails, wrong)
      return helpers.start {
        plugin = senders.plugin(p.setup(fake.url), #emails),
        env = p.env(fake.url, wrong),
      }
    end

    it("sends each shopper one request the API takes, with one-click "
      .. "unsubscribe", function()
      local fake = api.start(name, p.fake)
      local emails = { "ann@example.com", "bob@example.com" }
      local server = start(fake, emails)
      local tokens = senders.subscribe_all(server, "v-" .. name, emails,
        { title = "Blue shirt <M> & co" })
      local reqs = fake:wait_requests(2)
      assert.truthy(reqs, "the fake got no requests\n" .. server:stderr())
      local by = {}
      for _, req in ipairs(reqs) do
        assert.same({}, req.problems)
        assert.equals("POST", req.method)
        assert.equals(200, req.status)
        local m = p.read(req)
        assert.is_nil(by[m.to], m.to .. " got two requests")
        by[m.to] = m
      end
      for _, e in ipairs(emails) do
        local m = by[e]
        assert.truthy(m, "no request for " .. e)
        assert.equals(FROM, m.from)
        assert.equals("Back in stock: Blue shirt <M> & co", m.subject)
        local url = senders.unsubscribe_url(tokens[e])
        assert.equals("<" .. url .. ">", m.unsubscribe)
        assert.equals("List-Unsubscribe=One-Click", m.post)
        assert.truthy(m.text:find(url, 1, true), m.text)
        assert.truthy(m.text:find("Blue shirt <M> & co", 1, true))
        -- The HTML has the title escaped and the manage link.
        assert.truthy(m.html:find("Blue shirt &lt;M&gt; &amp; co", 1, true),
          m.html)
        assert.truthy(m.html:find(senders.PUBLIC
          .. "/restock-notifications/mine?token=manage-"
          .. helpers.urlencode(e), 1, true))
        assert.equals(EXTRA[name], m.extra)
      end
      local deliveries = senders.wait_deliveries(server, 2)
      for _, e in ipairs(emails) do
        assert.equals("delivered", deliveries[e].status)
        assert.equals(1, deliveries[e].attempts)
      end
      -- The provider's message id is in the log.
      local log = server:stderr()
      local ids = 0
      for _ in log:gmatch(name .. ": restocked mail for v%-" .. name
        .. " to [%w@.]+ accepted, message id [^\n]+") do
        ids = ids + 1
      end
      assert.equals(2, ids, log)
    end)

    it("retries " .. table.concat(p.retry, ", ") .. " and marks "
      .. table.concat(p.dead, ", ") .. " dead", function()
      local fake = api.start(name, p.fake)
      local emails = {}
      for _, shape in ipairs(p.retry) do
        emails[#emails + 1] = shape .. "@example.com"
      end
      for _, shape in ipairs(p.dead) do
        emails[#emails + 1] = shape .. "@example.com"
      end
      local server = start(fake, emails)
      senders.subscribe_all(server, "v-errors", emails)
      local deliveries = senders.wait_deliveries(server, #emails, 20)
      for _, shape in ipairs(p.retry) do
        local d = deliveries[shape .. "@example.com"]
        assert.equals("delivered", d.status, shape)
        assert.equals(2, d.attempts, shape)
      end
      for _, shape in ipairs(p.dead) do
        local d = deliveries[shape .. "@example.com"]
        assert.equals("dead", d.status, shape)
        assert.equals(1, d.attempts, shape)
        assert.truthy(d.last_error and #d.last_error > 0, shape)
      end
      for _, req in ipairs(fake:requests()) do
        assert.same({}, req.problems)
      end
    end)

    it("marks a delivery dead when the credentials are wrong", function()
      local fake = api.start(name, p.fake)
      local server = start(fake, { "cy@example.com" }, true)
      senders.subscribe_all(server, "v-creds", { "cy@example.com" })
      local d = senders.wait_deliveries(server, 1)["cy@example.com"]
      assert.equals("dead", d.status)
      assert.equals(1, d.attempts)
      local reqs = fake:requests()
      assert.equals(1, #reqs)
      assert.truthy(reqs[1].status == 401 or reqs[1].status == 403)
      if name == "ses" then
        -- The fake recomputed the signature and found it wrong.
        assert.same({ "signature does not match" }, reqs[1].problems)
      end
    end)
  end)
end
