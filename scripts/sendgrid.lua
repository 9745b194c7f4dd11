-- sendgrid.lua: restock notifications by email, through SendGrid's v3 API.
--
-- In plugin.lua:
--
--   require("sendgrid").setup {
--     from = "shop@example.com",             -- a sender SendGrid has verified
--     template_id = "d-0123456789abcdef",    -- optional: a dynamic template
--     template_ids = { de = "d-...", fr = "d-..." },  -- optional, per locale
--     confirmation_template_id = "d-...",    -- optional: double opt-in mails
--     confirmation_template_ids = { de = "d-..." },   -- optional, per locale
--     subscribed_template_id = "d-...",      -- optional: subscribed mails
--     unsubscribe_url = "https://shop.example.com/unsubscribe?token=%s",
--     public_url = "https://restock.example.com",  -- or RESTOCK_PUBLIC_URL
--   }
--
-- Every mail carries RFC 8058 one-click unsubscribe headers
-- (List-Unsubscribe, List-Unsubscribe-Post) in its personalization, built
-- by restock_mail.lua from the subscriber's unsubscribe_token and
-- unsubscribe_url (by default public_url's unsubscribe route); templates
-- get unsubscribe_url and manage_url too. A shopper's locale (the
-- event's subscribers) picks the template: template_ids[locale], then
-- template_ids[language] ("pt" for "pt-BR"), then template_id. Without a
-- template id the mail is restock_mail.lua's template for that locale
-- (templates/restocked.LOCALE.*), the links filled in per shopper with
-- SendGrid substitutions. Shoppers of different templates go in separate
-- requests (a request has one template), as part events retried on their
-- own.
--
-- Under double opt-in (restock-notification.confirmation_requested) each
-- shopper gets a confirmation mail with confirm_url (public_url's confirm
-- route), from confirmation_template_ids / confirmation_template_id or
-- the shared confirmation template; `confirm = false` turns it off.
--
-- The API key comes from SENDGRID_API_KEY; SENDGRID_API_URL points the
-- script at another base URL (default https://api.sendgrid.com).
--
-- Each recipient gets a personalization of their own, so nobody sees the
-- other addresses, at most 1,000 per request (SendGrid's limit): a restocked
-- event with more (batch_size over 1000) is split into
-- sendgrid.restocked-part events of 1,000, each retried on its own.
--
-- A 429 or a 5xx answer fails the delivery, which restockd retries with
-- backoff; any other 4xx is logged with SendGrid's error text and the
-- delivery is marked dead at once, since sending the same request again
-- would fail the same way.

local restock = require "restock"
local mail = require "restock_mail"

local M = {}

-- SendGrid accepts at most this many personalizations per request.
M.MAX_PERSONALIZATIONS = 1000

-- The error text of a SendGrid answer: its "errors" messages, or the body.
local function error_text(res)
  local body = restock.json.decode(res.body or "")
  if type(body) == "table" and type(body.errors) == "table" then
    local parts = {}
    for _, e in ipairs(body.errors) do
      if type(e) == "table" and e.message then
        parts[#parts + 1] = e.field and (e.field .. ": " .. e.message) or e.message
      end
    end
    if #parts > 0 then return table.concat(parts, "; ") end
  end
  return (res.body or ""):sub(1, 500)
end

-- Posts one mail/send request (its body already JSON, so that the tables it
-- was built from can be collected while the request is in flight). Returns
-- true, or nil, err (and {retry=false} for an answer that retrying will not
-- change).
local function post(config, json)
  local res, err = restock.http.request {
    method = "POST",
    url = config.api_url .. "/v3/mail/send",
    headers = {
      ["Authorization"] = "Bearer " .. config.api_key,
      ["Content-Type"] = "application/json",
    },
    body = json,
    timeout = config.timeout,
  }
  if not res then
    return nil, "SendGrid could not be reached: " .. err
  end
  if res.status >= 200 and res.status < 300 then
    return true
  end
  local why = string.format("SendGrid answered %d: %s", res.status, error_text(res))
  if res.status == 429 or res.status >= 500 then
    return nil, why
  end
  restock.log.error("sendgrid: %s", why)
  return nil, why, { retry = false }
end

-- A mail/send body for `personalizations`, from a template or as plain
-- text, as JSON.
local function sendgrid_mail(config, template_id, personalizations, subject,
                             text, html)
  local body = {
    from = { email = config.from, name = config.from_name },
    personalizations = personalizations,
  }
  if template_id then
    body.template_id = template_id
  else
    body.subject = subject
    body.content = { { type = "text/plain", value = text } }
    if html then
      body.content[2] = { type = "text/html", value = html }
    end
  end
  return restock.json.encode(body)
end

-- Substitution tags for the links that differ per shopper, in a mail
-- rendered once for a whole request.
local TAGS = { unsubscribe_url = "-restockUnsubscribeUrl-",
  manage_url = "-restockManageUrl-", email = "-restockEmail-" }

-- A template id of `ids` (locale -> id, lower-case keys) for `locale`:
-- the locale, its language, then `fallback`.
local function pick(ids, fallback, locale)
  if ids and type(locale) == "string" and locale ~= "" then
    local l = locale:lower()
    return ids[l] or ids[l:match("^([^-]+)")] or fallback
  end
  return fallback
end

-- What one request of a restock is sent with: a dynamic template's id, or
-- the shared template of one locale. Returns the group's key and
-- {template_id=} or {locale=}.
local function group_of(config, locale)
  local id = pick(config.template_ids, config.template_id, locale)
  if id then
    return "id:" .. id, { template_id = id }
  end
  local tpl = mail.template(config.mail, "restocked", locale)
  local l = tpl and tpl.locale or config.mail.locale
  return "locale:" .. l, { locale = l }
end

-- The one-click headers and links of one shopper (`sub`: their entry of
-- the event's subscribers, or {email = ...}).
local function links(config, sub)
  local headers, unsubscribe_url = mail.unsubscribe_headers(config.mail,
    sub.unsubscribe_token)
  return headers, unsubscribe_url,
    mail.link(config.mail.manage_url, sub.manage_token)
end

-- Sends the restock mail to `emails` (at most MAX_PERSONALIZATIONS) in one
-- request, with `group`'s template (group_of).
local function send_restocked(config, variant, emails, subscribers, group)
  -- subscribers[i] is emails[i]'s entry (the event's order, kept by
  -- groups); an entry out of place is looked up by email instead.
  local by_email
  local personalizations = {}
  local all_links = true
  for i, email in ipairs(emails) do
    local sub = subscribers and subscribers[i]
    if type(sub) ~= "table" or sub.email ~= email then
      if subscribers and not by_email then
        by_email = {}
        for _, s in ipairs(subscribers) do
          if type(s) == "table" and s.email then
            by_email[s.email] = s
          end
        end
      end
      sub = by_email and by_email[email] or { email = email }
    end
    local headers, unsubscribe_url, manage_url = links(config, sub)
    all_links = all_links and unsubscribe_url ~= nil and manage_url ~= nil
    personalizations[i] = {
      to = { { email = email } },
      headers = next(headers) and headers or nil,
      dynamic_template_data = { variant = variant, email = email,
        unsubscribe_url = unsubscribe_url, manage_url = manage_url },
    }
  end
  local subject, text, html
  if not group.template_id then
    -- One rendering for the request, the per-shopper links as SendGrid
    -- substitutions (only when every shopper has them, so that no mail
    -- shows a tag).
    local m = mail.compose(config.mail, "restocked", {
      variant = variant, email = TAGS.email, locale = group.locale,
      unsubscribe_token = all_links and "x" or nil,
      manage_token = all_links and "x" or nil,
    })
    if all_links then
      -- A literal pattern for a URL (and its HTML-escaped form).
      local function lit(u) return (u:gsub("%p", "%%%0")) end
      local u = mail.link(config.mail.unsubscribe_url, "x")
      local g = mail.link(config.mail.manage_url, "x")
      if m.text then
        m.text = m.text:gsub(lit(u), TAGS.unsubscribe_url)
          :gsub(lit(g), TAGS.manage_url)
      end
      if m.html then
        m.html = m.html:gsub(lit(mail.html_escape(u)), TAGS.unsubscribe_url)
          :gsub(lit(mail.html_escape(g)), TAGS.manage_url)
      end
    end
    subject, text, html = m.subject, m.text, m.html
    for _, p in ipairs(personalizations) do
      local d = p.dynamic_template_data
      p.substitutions = { [TAGS.email] = d.email,
        [TAGS.unsubscribe_url] = d.unsubscribe_url,
        [TAGS.manage_url] = d.manage_url }
      p.dynamic_template_data = nil
    end
  end
  local json = sendgrid_mail(config, group.template_id, personalizations,
    subject, text, html)
  personalizations = nil -- collectable while the request is in flight
  return post(config, json)
end

-- The restocked event's emails in parts of at most MAX_PERSONALIZATIONS.
M.PART_EVENT = "sendgrid.restocked-part"

function M.setup(options)
  options = options or {}
  local config = {
    from = options.from or os.getenv("SENDGRID_FROM"),
    from_name = options.from_name,
    template_id = options.template_id or os.getenv("SENDGRID_TEMPLATE_ID"),
    template_ids = nil,
    confirmation_template_id = options.confirmation_template_id,
    confirmation_template_ids = nil,
    subscribed_template_id = options.subscribed_template_id,
    unsubscribe_url = options.unsubscribe_url,
    api_key = options.api_key or os.getenv("SENDGRID_API_KEY"),
    api_url = (options.api_url or os.getenv("SENDGRID_API_URL")
      or "https://api.sendgrid.com"):gsub("/+$", ""),
    timeout = options.timeout or 15000,
    -- Templates, links and the one-click headers (restock_mail.lua).
    mail = mail.config("sendgrid", options),
  }
  if not config.api_key or config.api_key == "" then
    error("sendgrid: set SENDGRID_API_KEY (or api_key) to send mails", 2)
  end
  if not config.from or config.from == "" then
    error("sendgrid: set `from` (or SENDGRID_FROM) to a verified sender", 2)
  end
  -- Locale keys compared in lower case, as locales are.
  local function ids(option, name)
    if option == nil then return nil end
    if type(option) ~= "table" then
      error("sendgrid: " .. name .. " must be a table of locale = template id",
        3)
    end
    local out = {}
    for k, v in pairs(option) do
      if type(k) ~= "string" or type(v) ~= "string" or v == "" then
        error("sendgrid: " .. name .. " must map locales (strings) to "
          .. "template ids", 3)
      end
      out[k:lower()] = v
    end
    return out
  end
  config.template_ids = ids(options.template_ids, "template_ids")
  config.confirmation_template_ids = ids(options.confirmation_template_ids,
    "confirmation_template_ids")

  -- One request per delivery. An event with more emails than one request
  -- takes (batch_size over 1000) is split into part events, each delivered
  -- and retried on its own: a failed part is sent again, never the parts
  -- SendGrid already took (it has no idempotency key).
  -- The event's shoppers by template, in order: {key=, group=, emails=,
  -- subscribers=} (subscribers nil when the event has none).
  local function groups(data)
    local out, by_key = {}, {}
    local subs = data.subscribers
    for i, email in ipairs(data.emails or {}) do
      local sub = subs and subs[i]
      local locale = type(sub) == "table" and sub.locale or nil
      local key, group = group_of(config, locale)
      local g = by_key[key]
      if not g then
        g = { key = key, group = group, emails = {},
          subscribers = subs and {} or nil }
        by_key[key] = g
        out[#out + 1] = g
      end
      g.emails[#g.emails + 1] = email
      if subs then g.subscribers[#g.subscribers + 1] = sub end
    end
    return out
  end

  -- One request when the shoppers share a template and fit in one;
  -- otherwise part events of one template and at most 1,000 shoppers,
  -- each a request of its own.
  local function deliver(data)
    local gs = groups(data)
    if #gs == 0 then
      return true
    end
    if #gs == 1 and #gs[1].emails <= M.MAX_PERSONALIZATIONS then
      local variant, err = restock.variants.retrieve(data.variant_id)
      if not variant then
        return nil, err
      end
      return send_restocked(config, variant, gs[1].emails, gs[1].subscribers,
        gs[1].group)
    end
    for _, g in ipairs(gs) do
      for first = 1, #g.emails, M.MAX_PERSONALIZATIONS do
        local part = { variant_id = data.variant_id,
          sales_channel_id = data.sales_channel_id, emails = {},
          subscribers = g.subscribers and {} or nil }
        for i = first, math.min(#g.emails, first + M.MAX_PERSONALIZATIONS - 1) do
          part.emails[#part.emails + 1] = g.emails[i]
          if part.subscribers then
            part.subscribers[#part.subscribers + 1] = g.subscribers[i]
          end
        end
        local ok, emit_err = restock.emit(M.PART_EVENT, part)
        if not ok then
          return nil, emit_err
        end
      end
    end
    return true
  end
  restock.subscribe("restock-notification.restocked", deliver,
    { name = "sendgrid-restocked" })
  restock.subscribe(M.PART_EVENT, deliver, { name = "sendgrid-restocked-part" })

  -- Double opt-in: the mail that asks the shopper to confirm.
  if config.mail.confirm then
    restock.subscribe(mail.CONFIRMATION, function(data)
      if not config.mail.confirm_url then
        return nil, "sendgrid: set public_url (or confirm_url) to send "
          .. "confirmation mails", { retry = false }
      end
      local variant, err = restock.variants.retrieve(data.variant_id)
      if not variant then
        return nil, err
      end
      local headers, unsubscribe_url, manage_url = links(config, data)
      local confirm_url = mail.link(config.mail.confirm_url,
        data.confirm_token)
      local id = pick(config.confirmation_template_ids,
        config.confirmation_template_id, data.locale)
      local p = { to = { { email = data.email } },
        headers = next(headers) and headers or nil }
      local subject, text, html
      if id then
        p.dynamic_template_data = { variant = variant, email = data.email,
          locale = data.locale, confirm_url = confirm_url,
          unsubscribe_url = unsubscribe_url, manage_url = manage_url }
      else
        local m, merr = mail.compose(config.mail, "confirmation", {
          variant = variant, email = data.email, locale = data.locale,
          quantity = data.quantity, unsubscribe_token = data.unsubscribe_token,
          manage_token = data.manage_token, confirm_token = data.confirm_token,
        })
        if not m then
          return nil, merr, { retry = false }
        end
        subject, text, html = m.subject, m.text, m.html
      end
      return post(config, sendgrid_mail(config, id, { p }, subject, text,
        html))
    end, { name = "sendgrid-confirmation" })
  end

  if options.subscribed_template_id or options.confirm then
    restock.subscribe("restock-notification.subscribed", function(data)
      local variant, err = restock.variants.retrieve(data.variant_id)
      if not variant then
        return nil, err
      end
      local headers, link, manage = links(config, data)
      local name = variant.title or variant.sku or variant.id
      return post(config, sendgrid_mail(config, config.subscribed_template_id, { {
        to = { { email = data.email } },
        headers = next(headers) and headers or nil,
        dynamic_template_data = {
          variant = variant, email = data.email, unsubscribe_url = link,
          manage_url = manage,
        },
      } }, "We'll tell you when " .. name .. " is back",
        "We'll email you when " .. name .. " is back in stock."
          .. (manage and ("\n\nYour alerts: " .. manage) or "")
          .. (link and ("\nChanged your mind? " .. link) or "")))
    end, { name = "sendgrid-subscribed" })
  end
  return config
end

return M
