-- mailgun.lua: restock notifications through Mailgun's messages API
-- (POST /v3/DOMAIN/messages, HTTP basic auth "api" and the API key).
--
-- In plugin.lua:
--
--   require("mailgun").setup {
--     domain = "mg.example.com",         -- MAILGUN_DOMAIN, your sending domain
--     region = "eu",                     -- "us" (default) or "eu"; MAILGUN_REGION
--     from = "Example Shop <shop@mg.example.com>",
--     public_url = "https://restock.example.com",
--   }
--
-- The key comes from MAILGUN_API_KEY (or api_key). MAILGUN_API_URL (or
-- api_url) replaces the region's base URL (https://api.mailgun.net, or
-- https://api.eu.mailgun.net): a test double, a proxy. tag = "restock" adds
-- o:tag to every mail. The other options are restock_mail.lua's
-- (docs/senders.md).
--
-- 200 is success (Mailgun's id is logged). 429 and 5xx answers, and
-- requests that never got an answer, are retried with backoff; 400 (a bad
-- address, a missing field), 401 (a wrong key, or a key of the other
-- region), 402, 403, 404 (an unknown domain) and 413 are logged with
-- Mailgun's message and marked dead.

local restock = require "restock"
local mail = require "restock_mail"

local M = {}

M.REGIONS = {
  us = "https://api.mailgun.net",
  eu = "https://api.eu.mailgun.net",
}

-- The form fields of one mail (Mailgun's names: h: for a header).
function M.fields(config, m)
  local f = {
    from = m.from, to = m.to, subject = m.subject, text = m.text,
    html = m.html,
  }
  for name, value in pairs(m.headers) do
    f["h:" .. name] = value
  end
  if m.reply_to then
    f["h:Reply-To"] = m.reply_to
  end
  if config.tag then
    f["o:tag"] = config.tag
  end
  return f
end

function M.send(config, m)
  local res, err = restock.http.request {
    method = "POST",
    url = config.endpoint,
    headers = {
      ["Authorization"] = config.authorization,
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Accept"] = "application/json",
    },
    body = restock.url.form(M.fields(config, m)),
    timeout = config.timeout,
  }
  if not res then
    return nil, "Mailgun could not be reached: " .. err
  end
  if res.status == 200 then
    local body = restock.json.decode(res.body or "")
    return true, type(body) == "table" and body.id or "(no id)"
  end
  local why = string.format("Mailgun answered %d: %s", res.status,
    mail.error_text(res, "message"))
  if res.status == 429 or res.status >= 500 then
    return nil, why
  end
  return nil, why, { retry = false }
end

function M.setup(options)
  options = options or {}
  local config = mail.config("mailgun", options)
  config.api_key = options.api_key or os.getenv("MAILGUN_API_KEY")
  config.domain = options.domain or os.getenv("MAILGUN_DOMAIN")
  config.region = (options.region or os.getenv("MAILGUN_REGION") or "us")
    :lower()
  config.tag = options.tag
  if not config.api_key or config.api_key == "" then
    error("mailgun: set MAILGUN_API_KEY (or api_key)", 2)
  end
  if not config.domain or config.domain == "" then
    error("mailgun: set domain (or MAILGUN_DOMAIN) to your sending domain", 2)
  end
  if not M.REGIONS[config.region] then
    error('mailgun: region must be "us" or "eu"', 2)
  end
  if not config.from or config.from == "" then
    error("mailgun: set from to an address of your sending domain", 2)
  end
  local base = options.api_url or os.getenv("MAILGUN_API_URL")
    or M.REGIONS[config.region]
  config.api_url = base:gsub("/+$", "")
  config.endpoint = config.api_url .. "/v3/"
    .. restock.url.encode(config.domain) .. "/messages"
  config.authorization = "Basic "
    .. restock.crypto.base64_encode("api:" .. config.api_key)
  mail.register(config, function(m)
    return M.send(config, m)
  end)
  return config
end

return M
