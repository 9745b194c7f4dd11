-- woocommerce.lua: WooCommerce's stock and orders, from its webhooks (and,
-- optionally, a poll of its REST API), with no code in the shop
-- (docs/connectors.md says what to set up in WooCommerce's admin).
--
-- In plugin.lua:
--
--   require("woocommerce").setup {
--     secret = os.getenv("WOOCOMMERCE_WEBHOOK_SECRET"),  -- the webhooks' secret
--     -- Optional: also poll the REST API to catch what a webhook missed.
--     url = "https://shop.example.com",
--     consumer_key = os.getenv("WOOCOMMERCE_CONSUMER_KEY"),
--     consumer_secret = os.getenv("WOOCOMMERCE_CONSUMER_SECRET"),
--     poll_interval = 300000,   -- ms, 5 minutes by default
--   }
--
-- WooCommerce POSTs its webhooks to /hooks/woocommerce. Each is verified
-- against X-WC-Webhook-Signature (base64 HMAC-SHA256 of the raw body with
-- the webhook's secret); a bad, missing or garbled signature answers 401
-- and nothing of it is stored. The ping WooCommerce sends when a webhook is
-- saved (a form body "webhook_id=N", unsigned) answers 200 and stores
-- nothing. A delivery repeated (the same X-WC-Webhook-Delivery-ID with the
-- same body: WooCommerce gives one id to every delivery of a webhook in
-- the same second) is answered 200 and applied once.
--
-- Topics (X-WC-Webhook-Topic):
--   product.created, product.updated  a simple product or a variation
--     becomes a restockd variant (id: its numeric id as a string):
--     manage_stock with stock_quantity and backorders ("notify" or "yes":
--     allowed), or without managed stock its stock_status ("instock",
--     "onbackorder", "outofstock"). A variable product's own payload holds
--     no stock of its variations: each variation's update comes as its own
--     webhook (and, with the REST API set up, its variations are read).
--   order.created  restock.orders.record, for the conversions report.

local restock = require "restock"
local C = require "restock_connector"

local M = {}

-- How long a delivery is remembered.
local SEEN_TTL = 7 * 86400 * 1000

function M.setup(options)
  options = options or {}
  local secret = options.secret or os.getenv("WOOCOMMERCE_WEBHOOK_SECRET")
  if type(secret) ~= "string" or #secret < 16 then
    error("woocommerce: `secret` (or WOOCOMMERCE_WEBHOOK_SECRET), the "
      .. "webhooks' secret, must be at least 16 characters", 2)
  end
  local path = options.path or "/hooks/woocommerce"
  local name = options.name or "woocommerce"
  local key = function(...)
    return table.concat({ name, ... }, ":")
  end
  local api = nil
  if options.url then
    if not tostring(options.url):match("^https?://") then
      error("woocommerce: `url` must be the shop's http(s) address", 2)
    end
    local ck = options.consumer_key or os.getenv("WOOCOMMERCE_CONSUMER_KEY")
    local cs = options.consumer_secret
      or os.getenv("WOOCOMMERCE_CONSUMER_SECRET")
    if not ck or not cs then
      error("woocommerce: polling needs `consumer_key` and "
        .. "`consumer_secret` (a REST API key with Read access)", 2)
    end
    api = {
      base = tostring(options.url):gsub("/+$", "") .. "/wp-json/wc/v3",
      headers = {
        Authorization = "Basic "
          .. restock.crypto.base64_encode(ck .. ":" .. cs),
        Accept = "application/json",
      },
    }
  end

  -- A product or variation payload as a restockd variant.
  local function variant_of(p, parent)
    local vid = C.id(p.id)
    if not vid then
      return nil
    end
    local parent_id = C.id(parent and parent.id or p.parent_id)
    if parent_id == "0" then
      parent_id = nil
    end
    local title = C.present(p.name) and p.name or nil
    if parent and C.present(parent.name) then
      local options_text = {}
      for _, a in ipairs(C.present(p.attributes) and p.attributes or {}) do
        if C.present(a.option) then
          options_text[#options_text + 1] = tostring(a.option)
        end
      end
      title = parent.name .. (#options_text > 0
        and " - " .. table.concat(options_text, ", ") or "")
    end
    local t = {
      id = vid,
      product_id = parent_id or vid,
      sku = C.present(p.sku) and p.sku ~= "" and p.sku or restock.json.null,
      title = title or restock.json.null,
    }
    local managed = p.manage_stock == true or p.manage_stock == "parent"
    if managed then
      t.manage_inventory = true
      t.inventory_quantity = math.tointeger(p.stock_quantity) or 0
      t.allow_backorder = p.backorders == "notify" or p.backorders == "yes"
    elseif p.stock_status == "onbackorder" then
      t.manage_inventory = true
      t.allow_backorder = true
    elseif p.stock_status == "outofstock" then
      t.manage_inventory = true
      t.allow_backorder = false
      t.inventory_quantity = 0
    else
      t.manage_inventory = false
      t.allow_backorder = false
    end
    return t
  end

  local function upsert(list)
    if #list == 0 then
      return true
    end
    local ok, err = restock.variants.upsert { variants = list }
    if not ok then
      return nil, err
    end
    return true
  end

  -- The variations of a variable product, read from the REST API.
  local function fetch_variations(parent)
    local list, page = {}, 1
    while true do
      local url = string.format("%s/products/%s/variations?per_page=100&page=%d",
        api.base, C.id(parent.id), page)
      local rows, err = C.get_json(url, api.headers)
      if not rows then
        return nil, err
      end
      for _, v in ipairs(rows) do
        list[#list + 1] = variant_of(v, parent)
      end
      if #rows < 100 then
        return list
      end
      page = page + 1
    end
  end

  local function apply_product(p)
    if p.type == "variable" then
      if not api then
        return true
      end
      local list, err = fetch_variations(p)
      if not list then
        return nil, err
      end
      return upsert(list)
    end
    local t = variant_of(p)
    return upsert(t and { t } or {})
  end

  local function apply_order(o)
    local items = {}
    for _, li in ipairs(C.present(o.line_items) and o.line_items or {}) do
      local variation = C.id(li.variation_id)
      local vid = (variation and variation ~= "0") and variation
        or C.id(li.product_id)
      if vid and vid ~= "0" then
        items[#items + 1] = {
          variant_id = vid,
          quantity = math.tointeger(li.quantity) or 1,
          amount = C.decimal(C.micros(li.total) or 0),
        }
      end
    end
    local email = C.present(o.billing) and o.billing.email or nil
    local ok, err = restock.orders.record {
      order_id = C.id(o.id),
      email = C.present(email) and email ~= "" and email or nil,
      currency = C.present(o.currency) and o.currency or "XXX",
      -- GMT without a zone, which restockd reads as UTC.
      created_at = C.present(o.date_created_gmt) and o.date_created_gmt or nil,
      items = items,
    }
    if not ok then
      return nil, err
    end
    return true
  end

  restock.route("POST", path, function(req)
    local signature = req.headers["x-wc-webhook-signature"]
    if not signature and not req.headers["x-wc-webhook-topic"]
        and req.body:match("^webhook_id=%d+$") then
      return 200, "ok" -- the ping of a webhook being saved
    end
    local ok, why = C.verify_base64_hmac(secret, req.body, signature)
    if not ok then
      restock.log.warn("woocommerce: refused a webhook from %s: %s",
        req.remote_addr, why)
      return C.answer(401, "unauthorized", why)
    end
    local topic = req.headers["x-wc-webhook-topic"] or ""
    local apply
    if topic == "product.created" or topic == "product.updated" then
      apply = apply_product
    elseif topic == "order.created" then
      apply = apply_order
    else
      return 200, { ignored = topic }
    end
    local payload, err = restock.json.decode(req.body)
    if type(payload) ~= "table" then
      return C.answer(400, "invalid_data",
        "the body is not a JSON object: " .. tostring(err))
    end
    local delivery = req.headers["x-wc-webhook-delivery-id"] or ""
    local seen = key("delivery", delivery,
      restock.crypto.hex(restock.crypto.sha256(req.body)):sub(1, 32))
    local result, aerr = C.once(seen, SEEN_TTL, function()
      return apply(payload)
    end)
    if not result then
      -- WooCommerce does not retry, and disables a webhook after five
      -- failed deliveries in a row: only a failure of restockd itself
      -- answers 5xx; the poll (if set up) catches up.
      restock.log.error("woocommerce: %s %s was not applied: %s", topic,
        tostring(payload.id), aerr)
      return C.answer(503, "unexpected_state", "not applied: " .. aerr)
    end
    return 200, { received = true, ["repeat"] = result == "repeat" }
  end)

  if api then
    -- Products modified since the last poll: what a webhook missed (one
    -- lost while restockd was down, a stock change made by an import).
    restock.every(options.poll_interval or 300000, function()
      local cursor = restock.kv.get(key("cursor")) or "1970-01-01T00:00:00"
      local newest, page = cursor, 1
      -- modified_after is exclusive: a second earlier also takes what was
      -- modified in the cursor's own second after the last poll (applied
      -- again, which changes nothing).
      local after = C.iso((C.iso_ms(cursor) or 0) - 1000)
      while true do
        local url = string.format(
          "%s/products?modified_after=%s&dates_are_gmt=true&per_page=100"
            .. "&page=%d", api.base, C.urlencode(after), page)
        local rows, err = C.get_json(url, api.headers)
        if not rows then
          return nil, err
        end
        for _, p in ipairs(rows) do
          local ok, aerr = apply_product(p)
          if not ok then
            return nil, "product " .. tostring(p.id) .. ": " .. aerr
          end
          local at = p.date_modified_gmt
          if C.present(at) and at > newest then
            newest = at
          end
        end
        if #rows < 100 then
          break
        end
        page = page + 1
      end
      if newest ~= cursor then
        restock.kv.set(key("cursor"), newest)
      end
      return true
    end, { name = name .. ":poll" })
  end
end

return M
