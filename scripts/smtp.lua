-- smtp.lua: restock notifications through any SMTP server (your own, or a
-- provider's relay), with restock.smtp.send.
--
-- In plugin.lua:
--
--   require("smtp").setup {
--     url = "smtp://mail.example.com:587",  -- or smtps://...:465; SMTP_URL
--     username = "shop", password = "...",  -- SMTP_USERNAME, SMTP_PASSWORD
--     from = "Example Shop <shop@example.com>",            -- or SMTP_FROM
--     public_url = "https://restock.example.com",  -- restockd, for links
--   }
--
-- smtp:// upgrades to TLS with STARTTLS when the server offers it
-- (tls = "required" refuses to go on without it: set that whenever a
-- password is sent); smtps:// is TLS from the start. The other options
-- (templates, locale, shop_name, ...) are restock_mail.lua's, described in
-- docs/senders.md.
--
-- Every shopper gets a mail of their own, one delivery each. A 4xx reply
-- (a greylisting 451, a full mailbox 452), a timeout or a refused
-- connection fails the delivery, which restockd retries with backoff; a
-- 5xx reply (550 no such user, 535 bad credentials, 554 relaying denied)
-- marks it dead at once, with the server's reply in the log.

local restock = require "restock"
local mail = require "restock_mail"

local M = {}

-- Sends one composed mail; true and the Message-ID, or nil, err and, for
-- an answer a retry cannot change, {retry = false}.
function M.send(config, m)
  local headers = m.headers
  if m.reply_to then
    headers["Reply-To"] = m.reply_to
  end
  local ok, res = restock.smtp.send {
    url = config.url, username = config.username, password = config.password,
    tls = config.tls, from = m.from, to = m.to, subject = m.subject,
    text = m.text, html = m.html, headers = headers,
    timeout = config.timeout,
  }
  if ok then
    return true, res
  end
  if res:find("^permanent:") or res:find("^invalid:") then
    return nil, res, { retry = false }
  end
  return nil, res
end

function M.setup(options)
  options = options or {}
  local config = mail.config("smtp", options)
  config.url = options.url or os.getenv("SMTP_URL")
  config.username = options.username or os.getenv("SMTP_USERNAME")
  config.password = options.password or os.getenv("SMTP_PASSWORD")
  config.tls = options.tls or os.getenv("SMTP_TLS") or "try"
  config.from = config.from or os.getenv("SMTP_FROM")
  if not config.url or config.url == "" then
    error("smtp: set url (or SMTP_URL), e.g. smtp://mail.example.com:587", 2)
  end
  if not config.url:find("^smtps?://") then
    error("smtp: url must start with smtp:// or smtps://", 2)
  end
  if config.tls ~= "try" and config.tls ~= "required" then
    error('smtp: tls must be "try" or "required"', 2)
  end
  if not config.from or config.from == "" then
    error("smtp: set from (or SMTP_FROM) to the sender's address", 2)
  end
  mail.register(config, function(m)
    return M.send(config, m)
  end)
  return config
end

return M
