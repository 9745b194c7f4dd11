-- restock.smtp.send and scripts/smtp.lua against a real SMTP server
-- (python3-aiosmtpd, spec/support/smtp_server.py) that parses every message
-- back with Python's email package: one well-formed MIME message per
-- shopper with the RFC 8058 headers, a temporary 451 retried, a 550 marked
-- dead, STARTTLS, smtps:// and AUTH, locales and their fallback, the
-- one-click POST the List-Unsubscribe header leads to, and a server that
-- keeps answering while a mail server is slow to.
local socket = require "socket"
local helpers = require "spec.support.helpers"
local fake_http = require "spec.support.fake_http"
local smtp = require "spec.support.smtp_server"
local outbound = require "spec.support.outbound"
local senders = require "spec.support.senders"

local FROM = "Ünïcode Shop <shop@example.com>"

local function setup_code(url, extra)
  return string.format([[require("smtp").setup { url = %q, from = %q,
    public_url = %q, shop_name = "Ünïcode Shop", unsubscribe_mailto =
    "unsubscribe@example.com", product_url =
    "https://shop.example.com/products/{product_id}?variant={variant_id}" %s }]],
    url, FROM, senders.PUBLIC, extra or "")
end

-- The decoded value of a header of a parsed message (first one), and how
-- many times it occurs.
local function header(msg, name)
  local value, n = nil, 0
  for _, h in ipairs(msg.headers) do
    if h[1]:lower() == name:lower() then
      value = value or h[2]
      n = n + 1
    end
  end
  return value, n
end

local function part(msg, ctype)
  for _, p in ipairs(msg.parts) do
    if p.content_type == ctype then
      return p
    end
  end
end

describe("scripts/smtp.lua", function()
  after_each(function()
    smtp.cleanup()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  it("mails each restocked shopper one well-formed MIME message", function()
    local s = smtp.start {}
    local emails = { "ann@example.com", "bob@example.com", "cy@example.com" }
    local server = helpers.start {
      plugin = senders.plugin(setup_code(s.url), #emails),
    }
    local tokens = senders.subscribe_all(server, "v-mime", emails,
      { title = "Blaues Hemd <M> & Größe", sku = "SKU-1" })
    local msgs = s:wait_messages(3)
    assert.truthy(msgs, "the SMTP server got no mail\n" .. server:stderr())
    assert.equals(3, #msgs)
    local seen = {}
    for _, m in ipairs(msgs) do
      assert.is_nil(m.parse_error)
      assert.same({}, m.defects)
      assert.equals(1, #m.rcpt_tos)
      local to = m.rcpt_tos[1]
      assert.is_nil(seen[to], to .. " got two mails")
      seen[to] = true
      assert.equals("shop@example.com", m.mail_from)
      assert.equals(to, (header(m, "To")))
      assert.equals(FROM, (header(m, "From")))
      assert.equals("Back in stock: Blaues Hemd <M> & Größe",
        (header(m, "Subject")))
      -- Non-ASCII header values travel as RFC 2047 encoded words.
      for _, h in ipairs(m.raw_headers) do
        assert.truthy(not h[2]:find("[\128-\255]"), h[1] .. " is not ASCII")
      end
      local date = header(m, "Date")
      assert.truthy(date:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d "
        .. "%+0000$"), date)
      local id = header(m, "Message-ID")
      assert.truthy(id:match("^<%x+@example%.com>$"), id)
      assert.equals("1.0", (header(m, "MIME-Version")))
      assert.equals("multipart/alternative", m.content_type)
      assert.equals("auto-generated", (header(m, "Auto-Submitted")))
      local url = senders.unsubscribe_url(tokens[to])
      local lu, count = header(m, "List-Unsubscribe")
      assert.equals(1, count)
      assert.equals("<" .. url .. ">, <mailto:unsubscribe@example.com?subject="
        .. "unsubscribe%20" .. helpers.urlencode(tokens[to]) .. ">", lu)
      assert.equals("List-Unsubscribe=One-Click",
        (header(m, "List-Unsubscribe-Post")))
      -- Plain text first, then HTML, both UTF-8 quoted-printable.
      assert.equals(2, #m.parts)
      assert.equals("text/plain", m.parts[1].content_type)
      assert.equals("text/html", m.parts[2].content_type)
      for _, p in ipairs(m.parts) do
        assert.equals("utf-8", p.charset)
        assert.equals("quoted-printable", p.cte)
      end
      local text, html = m.parts[1].body, m.parts[2].body
      assert.truthy(text:find("Blaues Hemd <M> & Größe is back in stock at "
        .. "Ünïcode Shop", 1, true), text)
      assert.truthy(text:find("https://shop.example.com/products/prod_v-mime"
        .. "?variant=v-mime", 1, true), text)
      assert.truthy(text:find(url, 1, true))
      assert.truthy(html:find("Blaues Hemd &lt;M&gt; &amp; Größe", 1, true))
      assert.falsy(html:find("<M>", 1, true))
      assert.truthy(html:find(senders.PUBLIC
        .. "/restock-notifications/mine?token=manage-"
        .. helpers.urlencode(to), 1, true))
      -- CRLF only, every line within 998 octets, and the body's within
      -- quoted-printable's 76.
      assert.is_false(m.bare_lf)
      assert.truthy(m.max_line <= 998, "a line of " .. m.max_line)
      assert.truthy(m.max_body_line <= 76, "a body line of "
        .. m.max_body_line)
    end
    local deliveries = senders.wait_deliveries(server, 3)
    for _, e in ipairs(emails) do
      assert.equals("delivered", deliveries[e].status)
    end
    assert.truthy(server:stderr():find("smtp: restocked mail for v-mime to "
      .. "ann@example.com accepted, message id <", 1, true))
  end)

  it("sends a real restock to every subscriber, with working one-click "
    .. "links", function()
    -- The engine's own restocked event, whose subscribers carry their
    -- unsubscribe and manage tokens.
    local s = smtp.start {}
    local server = helpers.start { plugin = 'local restock = require "restock"\n'
      .. setup_code(s.url) }
    outbound.sold_out(server, "v-real")
    outbound.sold_out(server, "v-other")
    for _, e in ipairs({ "dee@example.com", "eve@example.com" }) do
      outbound.subscribe(server, "v-real", e)
    end
    outbound.subscribe(server, "v-other", "dee@example.com")
    outbound.set_quantity(server, "v-real", 4)
    local msgs = s:wait_messages(2)
    assert.truthy(msgs, "no mail\n" .. server:stderr())
    local to = {}
    for _, m in ipairs(msgs) do
      assert.same({}, m.defects)
      to[#to + 1] = m.rcpt_tos[1]
      assert.equals("Back in stock: Variant v-real", (header(m, "Subject")))
      local lu = header(m, "List-Unsubscribe")
      assert.truthy(lu, "no List-Unsubscribe in a real restock mail")
      assert.equals("List-Unsubscribe=One-Click",
        (header(m, "List-Unsubscribe-Post")))
      local url = lu:match("^<([^>]+)>")
      assert.truthy(url:find(senders.PUBLIC
        .. "/restock-notifications/unsubscribe?token=", 1, true), url)
      local res = helpers.request(server, "POST", url:sub(#senders.PUBLIC + 1),
        { headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
          body = "List-Unsubscribe=One-Click" })
      helpers.assert_status(res, 200)
      -- The manage link opens the shopper's own page.
      local manage = part(m, "text/plain").body:match(
        "(https://restock%.example%.com/restock%-notifications/mine%?token=%S+)")
      assert.truthy(manage, part(m, "text/plain").body)
      res = helpers.request(server, "GET", manage:sub(#senders.PUBLIC + 1))
      helpers.assert_status(res, 200)
      assert.equals(m.rcpt_tos[1], res.json.email)
    end
    table.sort(to)
    assert.same({ "dee@example.com", "eve@example.com" }, to)
    assert.falsy(server:stderr():find("without List-Unsubscribe", 1, true))
  end)

  it("sends the confirmation mail of double opt-in, whose link confirms",
    function()
    local s = smtp.start {}
    local server = helpers.start { plugin = 'local restock = require "restock"\n'
      .. 'restock.options { double_opt_in = true }\n' .. setup_code(s.url) }
    outbound.sold_out(server, "v-doi", { title = "Green cap" })
    outbound.subscribe(server, "v-doi", "fay@example.com")
    local m = s:wait_messages(1)
    assert.truthy(m, "no confirmation mail\n" .. server:stderr())
    m = m[1]
    assert.same({}, m.defects)
    assert.same({ "fay@example.com" }, m.rcpt_tos)
    assert.equals("Please confirm: tell me when Green cap is back",
      (header(m, "Subject")))
    assert.truthy(header(m, "List-Unsubscribe"))
    local link = part(m, "text/plain").body:match(
      "(https://restock%.example%.com/restock%-notifications/confirm%?token=%S+)")
    assert.truthy(link, part(m, "text/plain").body)
    assert.truthy(part(m, "text/html").body:find('href="'
      .. link:gsub("&", "&amp;") .. '"', 1, true))
    local pending = helpers.admin(server, "GET",
      "/admin/restock-notifications?variant_id=v-doi&status=pending")
    assert.equals(1, pending.json.count)
    local res = helpers.request(server, "GET", link:sub(#senders.PUBLIC + 1))
    helpers.assert_status(res, 200)
    local active = helpers.admin(server, "GET",
      "/admin/restock-notifications?variant_id=v-doi")
    assert.equals(1, active.json.count)
  end)

  it("retries a temporary 451 and marks a 550 dead", function()
    local s = smtp.start { "--tempfail-first", "1", "--reject", "nobody" }
    local emails = { "ann@example.com", "nobody@example.com" }
    local server = helpers.start {
      plugin = senders.plugin(setup_code(s.url), #emails),
    }
    -- ann's is the first RCPT not rejected: it gets the 451.
    senders.subscribe_all(server, "v-fail", emails)
    local d = senders.wait_deliveries(server, 2)
    assert.equals("delivered", d["ann@example.com"].status)
    assert.equals(2, d["ann@example.com"].attempts)
    assert.equals("dead", d["nobody@example.com"].status)
    assert.equals(1, d["nobody@example.com"].attempts)
    assert.truthy(d["nobody@example.com"].last_error:find(
      "permanent: 550 5.1.1 No such user here", 1, true),
      d["nobody@example.com"].last_error)
    local refused = s:records("refused")
    local replies = {}
    for _, r in ipairs(refused) do
      replies[#replies + 1] = r.reply:sub(1, 3)
    end
    table.sort(replies)
    assert.same({ "451", "550" }, replies)
    local msgs = s:messages()
    assert.equals(1, #msgs)
    assert.same({ "ann@example.com" }, msgs[1].rcpt_tos)
    assert.truthy(server:stderr():find("temporary: 451 4.3.0 Try again later",
      1, true))
  end)

  it("uses STARTTLS when offered, and authenticates", function()
    local cert, key = fake_http.make_cert()
    local s = smtp.start { "--starttls", cert, key, "--require-starttls",
      "--auth", "shop:s3cret" }
    local server = helpers.start {
      plugin = senders.plugin(setup_code(s.url,
        ', username = "shop", password = "s3cret", tls = "required"'), 1),
      env = { RESTOCK_CA_FILE = cert },
    }
    senders.subscribe_all(server, "v-tls", { "ann@example.com" })
    local msgs = s:wait_messages(1)
    assert.truthy(msgs, "no mail\n" .. server:stderr())
    assert.is_true(msgs[1].tls)
    assert.equals("shop", msgs[1].auth)
  end)

  it("marks a wrong password dead", function()
    local cert, key = fake_http.make_cert()
    local s = smtp.start { "--starttls", cert, key, "--auth", "shop:s3cret" }
    local server = helpers.start {
      plugin = senders.plugin(setup_code(s.url,
        ', username = "shop", password = "wrong"'), 1),
      env = { RESTOCK_CA_FILE = cert },
    }
    senders.subscribe_all(server, "v-auth", { "ann@example.com" })
    local d = senders.wait_deliveries(server, 1)["ann@example.com"]
    assert.equals("dead", d.status)
    assert.truthy(d.last_error:find("permanent: 535", 1, true), d.last_error)
    assert.equals(0, #s:messages())
  end)

  it("speaks smtps:// (TLS from the first byte)", function()
    local cert, key = fake_http.make_cert()
    local s = smtp.start { "--tls", cert, key }
    assert.truthy(s.url:find("^smtps://"))
    local server = helpers.start {
      plugin = senders.plugin(setup_code(s.url), 1),
      env = { RESTOCK_CA_FILE = cert },
    }
    senders.subscribe_all(server, "v-smtps", { "ann@example.com" })
    local msgs = s:wait_messages(1)
    assert.truthy(msgs, "no mail\n" .. server:stderr())
    assert.is_true(msgs[1].tls)
  end)

  it("writes in the shopper's locale, with a fallback", function()
    local s = smtp.start {}
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/restocked.de.subject",
      "Wieder da: {{variant.name}}\n")
    helpers.write_file(dir .. "/restocked.de.txt",
      "{{variant.name}} ist wieder da.\n{{#unsubscribe_url}}"
      .. "Abmelden: {{unsubscribe_url}}{{/unsubscribe_url}}\n")
    helpers.write_file(dir .. "/restocked.de.html",
      "<p>{{variant.name}} ist wieder da.</p>\n")
    local emails = { "de@example.com", "ch@example.com", "pt@example.com" }
    local server = helpers.start {
      plugin = senders.plugin(setup_code(s.url,
        string.format(", templates = %q", dir)), #emails,
        { ["de@example.com"] = "de", ["ch@example.com"] = "de-CH",
          ["pt@example.com"] = "pt-BR" }),
    }
    senders.subscribe_all(server, "v-i18n", emails, { title = "Hemd & Co" })
    local msgs = s:wait_messages(3)
    assert.truthy(msgs, "no mail\n" .. server:stderr())
    local by = {}
    for _, m in ipairs(msgs) do
      by[m.rcpt_tos[1]] = m
    end
    for _, e in ipairs({ "de@example.com", "ch@example.com" }) do
      assert.equals("Wieder da: Hemd & Co", (header(by[e], "Subject")))
      assert.truthy(part(by[e], "text/plain").body:find(
        "Hemd & Co ist wieder da.", 1, true))
      assert.equals("<p>Hemd &amp; Co ist wieder da.</p>",
        (part(by[e], "text/html").body:gsub("%s+$", "")))
    end
    -- No Portuguese template: the English default.
    assert.equals("Back in stock: Hemd & Co",
      (header(by["pt@example.com"], "Subject")))
  end)

  it("refuses a template with an unknown placeholder at load", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/restocked.en.subject", "{{variant.titel}}\n")
    helpers.write_file(dir .. "/restocked.en.txt", "x\n")
    local plugin = dir .. "/plugin.lua"
    helpers.write_file(plugin, 'local restock = require "restock"\n'
      .. setup_code("smtp://127.0.0.1:25", string.format(", templates = %q",
        dir)))
    local rc, _, stderr = helpers.run({ "check", "--config", plugin })
    assert.equals(2, rc)
    assert.truthy(stderr:find("restocked.en.subject: unknown placeholder "
      .. "{{variant.titel}}", 1, true), stderr)
  end)

  it("a mail's one-click unsubscribe POST removes the subscription", function()
    local s = smtp.start {}
    local server
    server = helpers.start {
      plugin = senders.plugin(setup_code(s.url), 1),
    }
    senders.subscribe_all(server, "v-click", { "ann@example.com" })
    local m = s:wait_messages(1)[1]
    local url = (header(m, "List-Unsubscribe")):match("^<([^>]+)>")
    -- What a mailbox provider does (RFC 8058 3.2): POST the URL with the
    -- one-click body. Our links point at PUBLIC; the path is restockd's.
    local path = url:sub(#senders.PUBLIC + 1)
    local res = helpers.request(server, "POST", path, {
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
      body = "List-Unsubscribe=One-Click",
    })
    helpers.assert_status(res, 200)
    assert.same({ unsubscribed = true }, res.json)
    local list = helpers.admin(server, "GET",
      "/admin/restock-notifications?variant_id=v-click")
    assert.equals(0, list.json.count)
  end)

  it("keeps answering while the SMTP server is slow", function()
    -- A port that accepts and never speaks: the handler waits on curl,
    -- never the loop.
    local silent = assert(socket.bind("127.0.0.1", 0))
    local _, port = silent:getsockname()
    local server = helpers.start {
      plugin = senders.plugin(setup_code("smtp://127.0.0.1:" .. port,
        ", timeout = 1500"), 1),
    }
    senders.subscribe_all(server, "v-slow", { "ann@example.com" })
    helpers.wait_stderr(server, "Processing restock-notification.restocked")
    local t0 = socket.gettime()
    local res = helpers.request(server, "GET", "/health")
    helpers.assert_status(res, 200)
    assert.truthy(socket.gettime() - t0 < 1, "the loop waited for SMTP")
    local events = outbound.events(server, senders.RESTOCKED)
    local d = events[1].deliveries[1]
    assert.equals("pending", d.status)
    silent:close()
  end)
end)

describe("restock.smtp.send", function()
  after_each(function()
    smtp.cleanup()
    local ok, err = pcall(fake_http.cleanup)
    helpers.cleanup()
    assert(ok, err)
  end)

  it("builds a message from its fields, and says what is wrong", function()
    local s = smtp.start {}
    local rec = helpers.tmpdir() .. "/rec"
    local server = helpers.start { plugin = helpers.recorder_plugin(rec)
      .. string.format([[
local function pack(ok, err) return { ok = ok, err = err } end
restock.subscribe("restock-notification.subscribed", function(d)
  local url = %q
  local long = string.rep("word ", 400)
  record("list", pack(restock.smtp.send { url = url, from = "shop@example.com",
    to = { "Ann Example <ann@example.com>", "bob@example.com" },
    subject = "Line\tone", text = ".dot first\nFrom here\n" .. long,
    headers = { ["X-Count"] = 7 } }))
  record("html_only", pack(restock.smtp.send { url = url,
    from = "shop@example.com", to = "ann@example.com", subject = "h",
    html = "<p>" .. long .. "</p>" }))
  record("bad_to", pack(restock.smtp.send { url = url, from = "shop@example.com",
    to = "not an address", text = "x" }))
  record("bad_header", pack(restock.smtp.send { url = url,
    from = "shop@example.com", to = "ann@example.com", text = "x",
    headers = { ["Content-Type"] = "text/evil" } }))
  record("crlf", pack(restock.smtp.send { url = url, from = "shop@example.com",
    to = "ann@example.com", text = "x", subject = "a\r\nBcc: x@y.com" }))
  record("refused", pack(restock.smtp.send { url = "smtp://127.0.0.1:%d",
    from = "shop@example.com", to = "ann@example.com", text = "x" }))
  record("bad_url", pack(restock.smtp.send { url = "http://127.0.0.1/",
    from = "shop@example.com", to = "ann@example.com", text = "x" }))
  record("raised", pack(pcall(restock.smtp.send, { url = url, from = 5 })))
end)
]], s.url, fake_http.closed_port()) }
    outbound.sold_out(server, "v-api")
    outbound.subscribe(server, "v-api", "ann@example.com")
    local recs = helpers.wait_records(rec, "raised", 1, 15)
    assert.truthy(recs, server:stderr())
    local r = {}
    for _, x in ipairs(helpers.read_records(rec)) do
      r[x.tag] = x.data
    end
    assert.is_true(r.list.ok, helpers.read_file(rec))
    assert.truthy(r.list.err and r.list.err:match("^<%x+@example%.com>$"))
    assert.is_true(r.html_only.ok)
    assert.is_nil(r.bad_to.ok)
    assert.truthy(r.bad_to.err:find("^invalid: to: "), r.bad_to.err)
    assert.truthy(r.bad_header.err:find("^invalid: message: a header name is "
      .. "not allowed"), r.bad_header.err)
    assert.truthy(r.crlf.err:find("^invalid: message: a header value has a "
      .. "line break"), r.crlf.err)
    assert.truthy(r.refused.err:find("^SMTP failed: "), r.refused.err)
    assert.truthy(r.bad_url.err:find("smtp:// or smtps://", 1, true))
    assert.is_false(r.raised.ok)
    local msgs = s:wait_messages(2)
    local list = msgs[1].rcpt_tos[1] and msgs[1] or msgs[2]
    for _, m in ipairs(msgs) do
      if #m.rcpt_tos == 2 then
        list = m
      end
    end
    assert.same({ "ann@example.com", "bob@example.com" }, list.rcpt_tos)
    assert.equals("Ann Example <ann@example.com>, bob@example.com",
      (header(list, "To")))
    assert.equals("7", (header(list, "X-Count")))
    assert.equals("Line\tone", (header(list, "Subject")))
    assert.equals("text/plain", list.content_type)
    local body = list.parts[1].body
    assert.truthy(body:find("^%.dot first\r\nFrom here\r\nword word"), body)
    assert.truthy(list.max_line <= 78, "a line of " .. list.max_line)
    for _, m in ipairs(msgs) do
      assert.same({}, m.defects)
    end
  end)
end)
