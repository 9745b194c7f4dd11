-- sendgrid.lua: restock notifications by email, through SendGrid's v3 API.
--
-- In plugin.lua:
--
--   require("sendgrid").setup {
--     from = "shop@example.com",             -- a sender SendGrid has verified
--     template_id = "d-0123456789abcdef",    -- optional: a dynamic template
--     subscribed_template_id = "d-...",      -- optional: confirmation mails
--     unsubscribe_url = "https://shop.example.com/unsubscribe?token=%s",
--   }
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
local function mail(config, template_id, personalizations, subject, text)
  local body = {
    from = { email = config.from, name = config.from_name },
    personalizations = personalizations,
  }
  if template_id then
    body.template_id = template_id
  else
    body.subject = subject
    body.content = { { type = "text/plain", value = text } }
  end
  return restock.json.encode(body)
end

-- Sends the restock mail to `emails` (at most MAX_PERSONALIZATIONS) in one
-- request.
local function send_restocked(config, variant, emails)
  local name = variant.title or variant.sku or variant.id
  local personalizations = {}
  for i, email in ipairs(emails) do
    personalizations[i] = {
      to = { { email = email } },
      dynamic_template_data = { variant = variant, email = email },
    }
  end
  local json = mail(config, config.template_id, personalizations,
    "Back in stock: " .. name,
    name .. " is back in stock. Hurry, before it sells out again!")
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
    subscribed_template_id = options.subscribed_template_id,
    unsubscribe_url = options.unsubscribe_url,
    api_key = options.api_key or os.getenv("SENDGRID_API_KEY"),
    api_url = (options.api_url or os.getenv("SENDGRID_API_URL")
      or "https://api.sendgrid.com"):gsub("/+$", ""),
    timeout = options.timeout or 15000,
  }
  if not config.api_key or config.api_key == "" then
    error("sendgrid: set SENDGRID_API_KEY (or api_key) to send mails", 2)
  end
  if not config.from or config.from == "" then
    error("sendgrid: set `from` (or SENDGRID_FROM) to a verified sender", 2)
  end

  -- One request per delivery. An event with more emails than one request
  -- takes (batch_size over 1000) is split into part events, each delivered
  -- and retried on its own: a failed part is sent again, never the parts
  -- SendGrid already took (it has no idempotency key).
  local function deliver(data)
    local variant, err = restock.variants.retrieve(data.variant_id)
    if not variant then
      return nil, err
    end
    return send_restocked(config, variant, data.emails)
  end
  restock.subscribe("restock-notification.restocked", function(data)
    local emails = data.emails or {}
    if #emails <= M.MAX_PERSONALIZATIONS then
      return deliver(data)
    end
    for first = 1, #emails, M.MAX_PERSONALIZATIONS do
      local part = { variant_id = data.variant_id,
        sales_channel_id = data.sales_channel_id, emails = {} }
      for i = first, math.min(#emails, first + M.MAX_PERSONALIZATIONS - 1) do
        part.emails[#part.emails + 1] = emails[i]
      end
      local ok, emit_err = restock.emit(M.PART_EVENT, part)
      if not ok then
        return nil, emit_err
      end
    end
    return true
  end, { name = "sendgrid-restocked" })
  restock.subscribe(M.PART_EVENT, deliver, { name = "sendgrid-restocked-part" })

  if options.subscribed_template_id or options.confirm then
    restock.subscribe("restock-notification.subscribed", function(data)
      local variant, err = restock.variants.retrieve(data.variant_id)
      if not variant then
        return nil, err
      end
      local link = config.unsubscribe_url
        and string.format(config.unsubscribe_url, data.unsubscribe_token)
      local name = variant.title or variant.sku or variant.id
      return post(config, mail(config, config.subscribed_template_id, { {
        to = { { email = data.email } },
        dynamic_template_data = {
          variant = variant, email = data.email, unsubscribe_url = link,
        },
      } }, "We'll tell you when " .. name .. " is back",
        "We'll email you when " .. name .. " is back in stock."
          .. (link and ("\n\nChanged your mind? " .. link) or "")))
    end, { name = "sendgrid-subscribed" })
  end
  return config
end

return M
