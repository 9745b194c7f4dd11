-- What the connector specs send: webhooks signed as Shopify and WooCommerce
-- sign them, with payloads in the shops' documented formats.
--
-- Signatures are made with the openssl command-line tool (base64 of
-- HMAC-SHA256 of the raw body), not with restockd's own code, so that a
-- spec checks restockd against an independent implementation.
--
-- Payload shapes (only the fields the connectors read, plus a few others
-- to keep them realistic) follow:
--   Shopify: the webhook reference (shopify.dev/docs/api/webhooks, topics
--     products/update, inventory_levels/update, orders/create) and the
--     REST Admin resources they carry (Product with its ProductVariant
--     list: id, product_id, inventory_item_id, inventory_quantity,
--     inventory_management, inventory_policy; InventoryLevel:
--     inventory_item_id, location_id, available, updated_at; Order: id,
--     email, currency, created_at, line_items with variant_id, quantity,
--     price, total_discount). Headers from "Verify webhooks": X-Shopify-
--     Topic, X-Shopify-Hmac-Sha256, X-Shopify-Webhook-Id, X-Shopify-Shop-
--     Domain, X-Shopify-API-Version.
--   WooCommerce: the REST API docs (woocommerce.github.io/woocommerce-rest-
--     api-docs, "Webhooks": the X-WC-Webhook-* headers, and the product,
--     product variation and order properties), and WC_Webhook::deliver()
--     and deliver_ping() in WooCommerce's includes/class-wc-webhook.php
--     (the X-WC-Webhook-Delivery-ID header, the ping's "webhook_id=N"
--     form body).
local cjson = require "cjson"
local helpers = require "spec.support.helpers"

local M = {}

local function hex(s)
  return (s:gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

-- base64(HMAC-SHA256(secret, body)), by the openssl CLI.
function M.sign(secret, body)
  local dir = helpers.tmpdir()
  local path = dir .. "/body"
  helpers.write_file(path, body)
  local cmd = string.format(
    "openssl dgst -sha256 -mac HMAC -macopt hexkey:%s -binary %s | base64 -w0",
    hex(secret), helpers.shquote(path))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  assert(out and #out == 44, "openssl gave no signature: " .. tostring(out))
  return out
end

-- base64 of s, by the base64 command-line tool.
function M.base64(s)
  local dir = helpers.tmpdir()
  local path = dir .. "/plain"
  helpers.write_file(path, s)
  local p = assert(io.popen("base64 -w0 " .. helpers.shquote(path)))
  local out = p:read("a")
  p:close()
  return out
end

local counter = 0
local function next_id(prefix)
  counter = counter + 1
  return string.format("%s-%d-%d", prefix, os.time(), counter)
end

-- ---- Shopify ----------------------------------------------------------------

-- POSTs a Shopify webhook. opts: id (X-Shopify-Webhook-Id; a fresh one by
-- default), signature (instead of the right one; false: none), body (raw,
-- instead of the payload's JSON), path.
function M.shopify(server, secret, topic, payload, opts)
  opts = opts or {}
  local body = opts.body or cjson.encode(payload)
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-Shopify-Topic"] = topic,
    ["X-Shopify-Shop-Domain"] = "restockd-test.myshopify.com",
    ["X-Shopify-API-Version"] = "2024-10",
    ["X-Shopify-Webhook-Id"] = opts.id or next_id("wh"),
    ["X-Shopify-Triggered-At"] = "2026-03-01T10:00:00.000000Z",
  }
  if opts.signature ~= false then
    headers["X-Shopify-Hmac-Sha256"] = opts.signature or M.sign(secret, body)
  end
  return helpers.request(server, "POST", opts.path or "/hooks/shopify",
    { headers = headers, body = body })
end

-- A Product as products/create and products/update send it: variants is a
-- list of {id=, inventory_item_id=, inventory_quantity=, title=,
-- inventory_management= ("shopify" by default, false for null),
-- inventory_policy= ("deny" by default), price=}.
function M.shopify_product(id, title, variants, updated_at)
  local list = {}
  for i, v in ipairs(variants) do
    list[i] = {
      id = v.id,
      product_id = id,
      title = v.title or "Default Title",
      price = v.price or "49.00",
      sku = v.sku or ("SKU-" .. v.id),
      position = i,
      inventory_policy = v.inventory_policy or "deny",
      compare_at_price = cjson.null,
      fulfillment_service = "manual",
      inventory_management = v.inventory_management == false and cjson.null
        or (v.inventory_management or "shopify"),
      option1 = v.title or "Default Title",
      created_at = "2026-02-01T09:00:00-05:00",
      updated_at = updated_at or "2026-03-01T09:00:00-05:00",
      taxable = true,
      barcode = cjson.null,
      grams = 200,
      weight = 0.2,
      weight_unit = "kg",
      inventory_item_id = v.inventory_item_id,
      inventory_quantity = v.inventory_quantity or 0,
      old_inventory_quantity = v.inventory_quantity or 0,
      requires_shipping = true,
      admin_graphql_api_id = "gid://shopify/ProductVariant/" .. v.id,
    }
  end
  return {
    id = id,
    title = title,
    body_html = "<p>" .. title .. "</p>",
    vendor = "restockd",
    product_type = "Shirts",
    handle = title:lower():gsub("%W+", "-"),
    created_at = "2026-02-01T09:00:00-05:00",
    updated_at = updated_at or "2026-03-01T09:00:00-05:00",
    published_at = "2026-02-01T09:00:00-05:00",
    status = "active",
    tags = "",
    variants = list,
    options = { { id = id + 1, product_id = id, name = "Title", position = 1,
      values = { "Default Title" } } },
    images = {},
    admin_graphql_api_id = "gid://shopify/Product/" .. id,
  }
end

-- An InventoryLevel as inventory_levels/update sends it.
function M.shopify_level(item, location, available, updated_at)
  return {
    inventory_item_id = item,
    location_id = location,
    available = available,
    updated_at = updated_at or "2026-03-01T10:00:00-05:00",
    admin_graphql_api_id = string.format(
      "gid://shopify/InventoryLevel/%d?inventory_item_id=%d", location, item),
  }
end

-- An Order as orders/create sends it: lines is a list of {variant_id=,
-- quantity=, price=, total_discount=}.
function M.shopify_order(id, email, currency, created_at, lines)
  local items = {}
  for i, l in ipairs(lines) do
    items[i] = {
      id = id * 10 + i,
      variant_id = l.variant_id,
      product_id = l.product_id or 1,
      title = "Item " .. i,
      quantity = l.quantity or 1,
      price = l.price,
      total_discount = l.total_discount or "0.00",
      sku = "SKU-" .. tostring(l.variant_id),
      fulfillable_quantity = l.quantity or 1,
      requires_shipping = true,
      taxable = true,
      gift_card = false,
    }
  end
  return {
    id = id,
    admin_graphql_api_id = "gid://shopify/Order/" .. id,
    order_number = 1000 + id % 1000,
    name = "#" .. (1000 + id % 1000),
    email = email,
    contact_email = email,
    created_at = created_at,
    updated_at = created_at,
    processed_at = created_at,
    currency = currency,
    presentment_currency = currency,
    financial_status = "paid",
    total_price = "0.00",
    line_items = items,
  }
end

-- ---- WooCommerce ------------------------------------------------------------

-- POSTs a WooCommerce webhook. opts: delivery (X-WC-Webhook-Delivery-ID),
-- signature (false: none), body (raw), path.
function M.woocommerce(server, secret, topic, payload, opts)
  opts = opts or {}
  local body = opts.body or cjson.encode(payload)
  local resource, event = topic:match("^(%w+)%.(%w+)$")
  local headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "WooCommerce/9.5.1 Hookshot (WordPress/6.7.1)",
    ["X-WC-Webhook-Source"] = "https://shop.example/",
    ["X-WC-Webhook-Topic"] = topic,
    ["X-WC-Webhook-Resource"] = resource,
    ["X-WC-Webhook-Event"] = event,
    ["X-WC-Webhook-ID"] = "17",
    ["X-WC-Webhook-Delivery-ID"] = opts.delivery or next_id("wc"),
  }
  if opts.signature ~= false then
    headers["X-WC-Webhook-Signature"] = opts.signature or M.sign(secret, body)
  end
  return helpers.request(server, "POST", opts.path or "/hooks/woocommerce",
    { headers = headers, body = body })
end

-- A product (or, with parent_id, a variation) as product.updated sends it:
-- GET /wc/v3/products/<id>.
function M.woo_product(p)
  return {
    id = p.id,
    name = p.name or ("Product " .. p.id),
    slug = "product-" .. p.id,
    type = p.type or (p.parent_id and "variation" or "simple"),
    status = "publish",
    sku = p.sku or ("W-" .. p.id),
    price = p.price or "25.00",
    regular_price = p.price or "25.00",
    parent_id = p.parent_id or 0,
    manage_stock = p.manage_stock == nil and true or p.manage_stock,
    stock_quantity = p.stock_quantity == nil and cjson.null or p.stock_quantity,
    stock_status = p.stock_status or "instock",
    backorders = p.backorders or "no",
    backorders_allowed = p.backorders ~= nil and p.backorders ~= "no",
    variations = p.variations or {},
    attributes = p.attributes or {},
    date_modified_gmt = p.date_modified_gmt or "2026-03-01T10:00:00",
  }
end

-- An order as order.created sends it: lines is a list of {product_id=,
-- variation_id=, quantity=, total=}.
function M.woo_order(id, email, currency, date_gmt, lines)
  local items = {}
  for i, l in ipairs(lines) do
    items[i] = {
      id = id * 10 + i,
      name = "Item " .. i,
      product_id = l.product_id,
      variation_id = l.variation_id or 0,
      quantity = l.quantity or 1,
      subtotal = l.total,
      total = l.total,
      price = l.price or 0,
    }
  end
  return {
    id = id,
    status = "processing",
    currency = currency,
    date_created = date_gmt,
    date_created_gmt = date_gmt,
    billing = { first_name = "Jane", last_name = "Doe", email = email },
    line_items = items,
  }
end

return M
