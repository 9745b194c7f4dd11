-- webhook.lua: posts events as JSON to a URL of yours, signed, so that any
-- notification channel (Slack, an SMS gateway, your own service) can take
-- restockd's events.
--
-- In plugin.lua:
--
--   require("webhook").setup {
--     url = "https://hooks.example.com/restockd",
--     secret = os.getenv("WEBHOOK_SECRET"),
--     events = { "restock-notification.restocked" },   -- the default
--   }
--
-- Each request's body is {"event": NAME, "data": DATA}. It carries
--   X-Restockd-Event:     the event name
--   X-Restockd-Timestamp: seconds since the epoch when it was sent
--   X-Restockd-Signature: "sha256=" .. hex(HMAC-SHA256(secret, TIMESTAMP .. "." .. BODY))
-- The receiver recomputes the signature over the raw body, compares it in
-- constant time, and refuses timestamps more than a few minutes old.
--
-- A 2xx answer succeeds. A 408, 429 or 5xx answer, or no answer, fails the
-- delivery so that restockd retries it; any other status marks it dead.

local restock = require "restock"

local M = {}

function M.setup(options)
  options = options or {}
  local url = options.url or os.getenv("WEBHOOK_URL")
  local secret = options.secret or os.getenv("WEBHOOK_SECRET")
  if not url or not url:match("^https?://") then
    error("webhook: `url` (or WEBHOOK_URL) must be an http(s) URL", 2)
  end
  if not secret or #secret < 16 then
    error("webhook: `secret` (or WEBHOOK_SECRET) must be at least 16 characters", 2)
  end
  local events = options.events or { "restock-notification.restocked" }
  for _, event in ipairs(events) do
    restock.subscribe(event, function(data)
      local body = restock.json.encode({ event = event, data = data })
      local timestamp = tostring(os.time())
      local res, err = restock.http.request {
        method = "POST",
        url = url,
        headers = {
          ["Content-Type"] = "application/json",
          ["X-Restockd-Event"] = event,
          ["X-Restockd-Timestamp"] = timestamp,
          ["X-Restockd-Signature"] = "sha256=" .. restock.crypto.hex(
            restock.crypto.hmac_sha256(secret, timestamp .. "." .. body)),
        },
        body = body,
        timeout = options.timeout or 10000,
      }
      if not res then
        return nil, "webhook could not be reached: " .. err
      end
      if res.status >= 200 and res.status < 300 then
        return true
      end
      local why = string.format("webhook answered %d: %s", res.status,
        (res.body or ""):sub(1, 300))
      if res.status == 408 or res.status == 429 or res.status >= 500 then
        return nil, why
      end
      return nil, why, { retry = false }
    end, { name = (options.name or "webhook") .. ":" .. event })
  end
end

return M
