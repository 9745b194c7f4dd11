-- Store-side steps shared by the specs of restock.http.request and the
-- shipped scripts (sendgrid, webhook): make a sold-out variant, subscribe
-- emails to it (firing restock-notification.subscribed), restock it (firing
-- restock-notification.restocked) and wait for an event's delivery status.
local helpers = require "spec.support.helpers"

local M = {}

-- Creates (or resets) a variant with inventory_quantity 0.
function M.sold_out(server, id, fields)
  local v = { id = id, product_id = "prod_" .. id, sku = "SKU-" .. id,
    title = "Variant " .. id, inventory_quantity = 0 }
  for k, val in pairs(fields or {}) do
    v[k] = val
  end
  helpers.assert_status(helpers.admin(server, "POST", "/admin/variants", v),
    200)
end

local function subscribe_path(id)
  return "/restock-notifications/variants/" .. helpers.urlencode(id)
end

-- Subscribes one email; asserts 201.
function M.subscribe(server, id, email)
  local res = helpers.request(server, "POST", subscribe_path(id),
    { json = { email = email } })
  helpers.assert_status(res, 201)
  return res
end

-- Subscribes every email of the list over one keep-alive connection.
function M.subscribe_many(server, id, emails)
  local conn = helpers.connect(server, 10)
  local path = subscribe_path(id)
  for _, email in ipairs(emails) do
    local res = conn:request("POST", path, { json = { email = email } })
    if res.status ~= 201 then
      error(string.format("subscribing %s: %s", email,
        helpers.describe(res)), 2)
    end
  end
  conn:close()
end

-- Sets the variant's inventory_quantity (raising it fires the restock).
function M.set_quantity(server, id, quantity)
  helpers.assert_status(helpers.admin(server, "POST", "/admin/variants/"
    .. helpers.urlencode(id), { inventory_quantity = quantity }), 200)
end

-- n emails "prefix-1@example.com" .. "prefix-n@example.com".
function M.emails(prefix, n)
  local out = {}
  for i = 1, n do
    out[i] = string.format("%s-%d@example.com", prefix, i)
  end
  return out
end

-- The events named `name` (all statuses), oldest first.
function M.events(server, name)
  local list = helpers.events(server, { name = name, limit = 1000 })
  local events = list.events or {}
  table.sort(events, function(a, b) return a.id < b.id end)
  return events
end

-- Polls until there are at least n events named `name` and every one of
-- them has `status` (a string); returns them, oldest first. On timeout
-- (seconds, 10 by default) it raises, showing what the server listed.
function M.wait_events(server, name, status, n, timeout)
  n = n or 1
  local last
  local events = helpers.wait_for(function()
    last = M.events(server, name)
    if #last < n then
      return nil
    end
    for _, e in ipairs(last) do
      if e.status ~= status then
        return nil
      end
    end
    return last
  end, timeout or 10)
  if not events then
    local cjson = require "cjson"
    error(string.format("expected %d %s event(s) %s; the server lists %s\n"
      .. "stderr:\n%s", n, name, status, cjson.encode(last or {}),
      server:stderr()), 2)
  end
  return events
end

-- A Lua literal for a value made of tables, strings, numbers and booleans,
-- to write test data into a plugin script.
function M.literal(v)
  local t = type(v)
  if t == "string" then
    return string.format("%q", v)
  elseif t == "number" or t == "boolean" or t == "nil" then
    return tostring(v)
  elseif t == "table" then
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = "[" .. M.literal(k) .. "] = " .. M.literal(v[k])
    end
    return "{ " .. table.concat(parts, ", ") .. " }"
  end
  error("cannot write a " .. t .. " as a Lua literal")
end

return M
