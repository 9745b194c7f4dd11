-- postmark.lua: restock notifications through Postmark's email API
-- (POST /email with the server's API token).
--
-- In plugin.lua:
--
--   require("postmark").setup {
--     from = "Example Shop <shop@example.com>",  -- a confirmed sender
--     message_stream = "outbound",               -- POSTMARK_MESSAGE_STREAM
--     public_url = "https://restock.example.com",
--   }
--
-- The token comes from POSTMARK_SERVER_TOKEN (or server_token);
-- POSTMARK_API_URL (or api_url) replaces https://api.postmarkapp.com.
-- Restock mails are transactional: they go to the "outbound" stream unless
-- message_stream names another; tag = "restock" sets Postmark's Tag. The
-- other options are restock_mail.lua's (docs/senders.md).
--
-- 200 with ErrorCode 0 is success (Postmark's MessageID is logged). 429,
-- 5xx, a 422 with ErrorCode 100 (maintenance) or 429 (rate limit), and
-- requests that never got an answer are retried; 401 (a wrong token), 413,
-- 404 and every other 422 (300 invalid email request, 406 inactive
-- recipient, 400/401 sender signature not found or not confirmed, 405 not
-- allowed to send, 412/413 the account, ...) are logged and marked dead.

local restock = require "restock"
local mail = require "restock_mail"

local M = {}

-- ErrorCodes of a 422 that a later try may not get.
M.RETRY_CODES = { [100] = true, [429] = true }

-- The JSON body of one mail.
function M.body(config, m)
  local headers = {}
  local names = {}
  for name in pairs(m.headers) do
    names[#names + 1] = name
  end
  table.sort(names)
  for _, name in ipairs(names) do
    headers[#headers + 1] = { Name = name, Value = m.headers[name] }
  end
  return {
    From = m.from, To = m.to, Subject = m.subject, TextBody = m.text,
    HtmlBody = m.html, ReplyTo = m.reply_to, Headers = headers,
    MessageStream = config.message_stream, Tag = config.tag,
  }
end

function M.send(config, m)
  local res, err = restock.http.request {
    method = "POST",
    url = config.api_url .. "/email",
    headers = {
      ["Accept"] = "application/json",
      ["Content-Type"] = "application/json",
      ["X-Postmark-Server-Token"] = config.server_token,
    },
    body = restock.json.encode(M.body(config, m)),
    timeout = config.timeout,
  }
  if not res then
    return nil, "Postmark could not be reached: " .. err
  end
  local body = restock.json.decode(res.body or "")
  body = type(body) == "table" and body or {}
  if res.status == 200 and (body.ErrorCode or 0) == 0 then
    return true, body.MessageID or "(no id)"
  end
  local why = string.format("Postmark answered %d%s: %s", res.status,
    body.ErrorCode and (" (ErrorCode " .. tostring(body.ErrorCode) .. ")")
      or "", mail.error_text(res, "Message"))
  if res.status == 429 or res.status >= 500
      or (res.status == 422 and M.RETRY_CODES[body.ErrorCode]) then
    return nil, why
  end
  return nil, why, { retry = false }
end

function M.setup(options)
  options = options or {}
  local config = mail.config("postmark", options)
  config.server_token = options.server_token
    or os.getenv("POSTMARK_SERVER_TOKEN")
  config.message_stream = options.message_stream
    or os.getenv("POSTMARK_MESSAGE_STREAM") or "outbound"
  config.tag = options.tag
  config.api_url = (options.api_url or os.getenv("POSTMARK_API_URL")
    or "https://api.postmarkapp.com"):gsub("/+$", "")
  if not config.server_token or config.server_token == "" then
    error("postmark: set POSTMARK_SERVER_TOKEN (or server_token)", 2)
  end
  if not config.from or config.from == "" then
    error("postmark: set from to a confirmed sender signature", 2)
  end
  mail.register(config, function(m)
    return M.send(config, m)
  end)
  return config
end

return M
