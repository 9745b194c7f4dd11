-- shopify.lua: Shopify's stock and orders, from its webhooks, with no code
-- in the shop (docs/connectors.md says what to set up in Shopify's admin).
--
-- In plugin.lua:
--
--   require("shopify").setup {
--     secret = os.getenv("SHOPIFY_API_SECRET"),  -- the app's client secret
--   }
--
-- Shopify POSTs its webhooks to /hooks/shopify. Each is verified against
-- X-Shopify-Hmac-Sha256 (base64 HMAC-SHA256 of the raw body with the
-- secret); a bad, missing or garbled signature answers 401 and nothing of
-- it is stored. A verified webhook is queued as the event
-- "shopify.webhook" (durably, in the outbox) and answered 200 at once,
-- since Shopify wants an answer within 5 s; the handler `shopify:apply`
-- applies it, with the outbox's retries. A webhook repeated with the same
-- X-Shopify-Webhook-Id is answered 200 and applied once.
--
-- Topics (X-Shopify-Topic):
--   products/create, products/update  each variant becomes a restockd
--     variant (id: Shopify's numeric id as a string): inventory_quantity,
--     inventory_management (null: not managed), inventory_policy
--     ("continue": backorders allowed); each variant's inventory_item_id
--     is remembered (restock.kv) for the levels below.
--   inventory_levels/update  the level of that inventory item's variant at
--     that Shopify location (a stock location of the same id, created on
--     first sight) becomes `available`; from its first level on, a
--     variant's quantity is the sum of its levels.
--   orders/create  restock.orders.record, for the conversions report.
-- Updates that arrive out of order (an older updated_at than one already
-- applied) are skipped.

local restock = require "restock"
local C = require "restock_connector"

local M = {}

local TOPICS = {
  ["products/create"] = true,
  ["products/update"] = true,
  ["inventory_levels/update"] = true,
  ["orders/create"] = true,
}

-- How long a webhook id is remembered: Shopify retries a delivery for 48
-- hours.
local SEEN_TTL = 7 * 86400 * 1000

function M.setup(options)
  options = options or {}
  local secret = options.secret or os.getenv("SHOPIFY_API_SECRET")
  if type(secret) ~= "string" or #secret < 16 then
    error("shopify: `secret` (or SHOPIFY_API_SECRET), the app's client "
      .. "secret, must be at least 16 characters", 2)
  end
  local path = options.path or "/hooks/shopify"
  local name = options.name or "shopify"
  -- One event name for every shop set up: each handler takes its own.
  local event = "shopify.webhook"
  local key = function(...)
    return table.concat({ name, ... }, ":")
  end

  local function apply_product(p)
    local pid = C.id(p.id)
    if not pid then
      return true
    end
    if C.older(key("product_at", pid), p.updated_at) then
      return true
    end
    local list = {}
    for _, v in ipairs(C.present(p.variants) and p.variants or {}) do
      local vid = C.id(v.id)
      if vid then
        local item = C.id(v.inventory_item_id)
        if item then
          C.kv_put(key("item", item), vid)
        end
        local title = p.title
        if C.present(v.title) and v.title ~= "Default Title" then
          title = (C.present(title) and title .. " - " or "") .. v.title
        end
        local t = {
          id = vid,
          product_id = pid,
          sku = C.present(v.sku) and v.sku ~= "" and v.sku or restock.json.null,
          title = C.present(title) and title or restock.json.null,
          manage_inventory = C.present(v.inventory_management),
          allow_backorder = v.inventory_policy == "continue",
        }
        -- A variant with levels has the sum of its levels as its quantity.
        local q = math.tointeger(v.inventory_quantity)
        if q and not restock.kv.get(key("multi", vid)) then
          t.inventory_quantity = q
        end
        list[#list + 1] = t
      end
    end
    if #list == 0 then
      return true
    end
    local ok, err = restock.variants.upsert { variants = list }
    if not ok then
      return nil, "product " .. pid .. ": " .. err
    end
    return true
  end

  local function apply_level(p)
    local item, loc = C.id(p.inventory_item_id), C.id(p.location_id)
    local available = math.tointeger(p.available)
    if not item or not loc or not available then
      return true -- an untracked item, or nothing to apply
    end
    local vid = restock.kv.get(key("item", item))
    if not vid then
      -- Learnt from products/create and products/update: one is on its way
      -- (or the product predates the connection); the delivery is retried.
      return nil, "inventory item " .. item .. " belongs to no variant seen "
        .. "yet (products/create or products/update brings it)"
    end
    if C.older(key("level_at", item, loc), p.updated_at) then
      return true
    end
    local ok, err = restock.inventory.set_level {
      variant_id = vid,
      location_id = loc,
      stocked_quantity = available > 0 and available or 0,
      reserved_quantity = available < 0 and -available or 0,
    }
    if not ok then
      return nil, "level of " .. vid .. " at " .. loc .. ": " .. err
    end
    C.kv_put(key("multi", vid), "1")
    return true
  end

  local function apply_order(p)
    local items = {}
    for _, li in ipairs(C.present(p.line_items) and p.line_items or {}) do
      local vid = C.id(li.variant_id)
      if vid then
        local qty = math.tointeger(li.quantity) or 1
        local amount = (C.micros(li.price) or 0) * qty
          - (C.micros(li.total_discount) or 0)
        items[#items + 1] = { variant_id = vid, quantity = qty,
          amount = C.decimal(amount) }
      end
    end
    local email = p.email
    if not C.present(email) or email == "" then
      email = C.present(p.contact_email) and p.contact_email or nil
    end
    local ok, err = restock.orders.record {
      order_id = C.id(p.id),
      email = email ~= "" and email or nil,
      currency = C.present(p.currency) and p.currency or "XXX",
      created_at = C.present(p.created_at) and p.created_at or nil,
      items = items,
    }
    if not ok then
      return nil, "order " .. tostring(C.id(p.id)) .. ": " .. err
    end
    return true
  end

  restock.route("POST", path, function(req)
    local ok, why = C.verify_base64_hmac(secret, req.body,
      req.headers["x-shopify-hmac-sha256"])
    if not ok then
      restock.log.warn("shopify: refused a webhook from %s: %s",
        req.remote_addr, why)
      return C.answer(401, "unauthorized", why)
    end
    local topic = req.headers["x-shopify-topic"] or ""
    if not TOPICS[topic] then
      return 200, { ignored = topic }
    end
    local payload, err = restock.json.decode(req.body)
    if type(payload) ~= "table" then
      return C.answer(400, "invalid_data",
        "the body is not a JSON object: " .. tostring(err))
    end
    local id = req.headers["x-shopify-webhook-id"]
    local function queue()
      local queued, qerr = restock.emit(event,
        { shop = name, topic = topic, webhook_id = id, payload = payload })
      if not queued then
        return nil, qerr
      end
      return "queued"
    end
    local result, qerr
    if id and id ~= "" then
      result, qerr = C.once(key("webhook", id), SEEN_TTL, queue)
    else
      result, qerr = queue()
    end
    if not result then
      return C.answer(503, "unexpected_state", "not stored: " .. qerr)
    end
    return 200, { received = true, ["repeat"] = result == "repeat" }
  end)

  restock.subscribe(event, function(data)
    if data.shop ~= name then
      return true -- another shop's webhook
    end
    local p = data.payload
    if data.topic == "products/create" or data.topic == "products/update" then
      return apply_product(p)
    elseif data.topic == "inventory_levels/update" then
      return apply_level(p)
    elseif data.topic == "orders/create" then
      return apply_order(p)
    end
    return true
  end, { name = name .. ":apply", max_attempts = options.max_attempts or 8 })
end

return M
