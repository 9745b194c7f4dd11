-- What the specs of the shipped senders share: a plugin that sets a sender
-- up and, standing in for the lifecycle work's restocked events, turns the
-- subscribed events of N shoppers into one restocked event whose
-- `subscribers` entries carry what the contract gives them (email,
-- subscribed_at, manage_token, locale) and the subscription's
-- unsubscribe_token; and the steps and checks around it.
local helpers = require "spec.support.helpers"
local outbound = require "spec.support.outbound"

local M = {}

M.RESTOCKED = "restock-notification.restocked"
M.PUBLIC = "https://restock.example.com"

-- The plugin: `setup` is Lua code (the sender's setup call); after `n`
-- subscribes one restocked event goes out with all n of them. locales maps
-- an email to its subscriber's locale.
function M.plugin(setup, n, locales, options)
  return string.format([[
local restock = require "restock"
restock.options %s
%s
local LOCALES = %s
local seen = {}
restock.subscribe("restock-notification.subscribed", function(d)
  seen[#seen + 1] = { email = d.email, subscribed_at = "2026-01-01T00:00:00.000Z",
    manage_token = "manage-" .. d.email, locale = LOCALES[d.email],
    unsubscribe_token = d.unsubscribe_token }
  if #seen < %d then return true end
  local subs, emails = seen, {}
  seen = {}
  for i, s in ipairs(subs) do emails[i] = s.email end
  return restock.emit("restock-notification.restocked",
    { variant_id = d.variant_id, emails = emails, subscribers = subs })
end, { name = "spec-seed" })
]], outbound.literal(options or { max_attempts = 3 }), setup,
    outbound.literal(locales or {}), n)
end

-- A sold-out variant and n shoppers subscribed to it, one after another so
-- that the order is known; returns {email = unsubscribe_token}.
function M.subscribe_all(server, variant, emails, fields)
  outbound.sold_out(server, variant, fields)
  for _, e in ipairs(emails) do
    outbound.subscribe(server, variant, e)
  end
  local events = outbound.wait_events(server,
    "restock-notification.subscribed", "delivered", #emails)
  local tokens = {}
  for _, ev in ipairs(events) do
    tokens[ev.data.email] = ev.data.unsubscribe_token
  end
  return tokens
end

-- The restocked event's deliveries, by subscriber, once none is pending.
function M.wait_deliveries(server, n, timeout)
  local last
  local done = helpers.wait_for(function()
    local list = outbound.events(server, M.RESTOCKED)
    if #list == 0 then
      return nil
    end
    local by = {}
    local count = 0
    for _, ev in ipairs(list) do
      for _, d in ipairs(ev.deliveries or {}) do
        if d.subscriber then
          if d.status == "pending" then
            last = list
            return nil
          end
          by[d.subscriber] = d
          count = count + 1
        end
      end
    end
    last = list
    if count >= n then
      return by
    end
  end, timeout or 15)
  if not done then
    error("deliveries did not settle: " .. require("cjson").encode(last or {})
      .. "\nstderr:\n" .. server:stderr(), 2)
  end
  return done
end

-- The unsubscribe URL restockd's links hold for a token.
function M.unsubscribe_url(token)
  return M.PUBLIC .. "/restock-notifications/unsubscribe?token="
    .. helpers.urlencode(token)
end

return M
