-- medusa.lua: a Medusa backend's stock and orders, polled from its Admin
-- API, so that a Medusa shop adds nothing to its own code
-- (docs/connectors.md says which key to create in Medusa's admin).
--
-- In plugin.lua:
--
--   require("medusa").setup {
--     url = "https://medusa.example.com",        -- the backend's base URL
--     api_key = os.getenv("MEDUSA_API_KEY"),     -- a secret API key (v2), or
--     -- token = os.getenv("MEDUSA_TOKEN"),      -- a user's token (v2 JWT, v1 API token)
--     interval = 60000,                          -- ms between polls
--   }
--
-- Every `interval` ms (the task "medusa:poll", on one node at a time), it
-- reads, Medusa v2's Admin API first (v1's where its paths differ, found
-- out on the first poll, or set with version = 1):
--   - stock locations with their sales channels, and publishable API keys
--     with theirs, which become restockd's (a storefront's
--     x-publishable-api-key works on the subscribe route as it does on
--     Medusa's);
--   - the variants updated since its cursor (manage_inventory,
--     allow_backorder, and which inventory item each one uses);
--   - every inventory item's levels per location (stocked and reserved):
--     the inventory module keeps no update time per level, so each poll
--     reads them all and applies those that changed;
--   - the orders created since its cursor, for the conversions report.
-- Its cursors and id mappings are kept in restock.kv: after a restart it
-- goes on from where it was, and what changed while restockd was down is
-- picked up by the first poll.

local restock = require "restock"
local C = require "restock_connector"

local M = {}

local PAGE = 100

function M.setup(options)
  options = options or {}
  local base = options.url or os.getenv("MEDUSA_URL")
  if type(base) ~= "string" or not base:match("^https?://") then
    error("medusa: `url` (or MEDUSA_URL), the backend's http(s) address, "
      .. "is required", 2)
  end
  base = base:gsub("/+$", "")
  local api_key = options.api_key or os.getenv("MEDUSA_API_KEY")
  local token = options.token or os.getenv("MEDUSA_TOKEN")
  if not api_key and not token then
    error("medusa: set `api_key` (a secret API key, sk_...) or `token` "
      .. "(MEDUSA_API_KEY or MEDUSA_TOKEN)", 2)
  end
  local interval = options.interval or 60000
  local name = options.name or "medusa"
  local version = options.version
  if version ~= nil and version ~= 1 and version ~= 2 then
    error("medusa: `version` must be 1 or 2 (or left out to find out)", 2)
  end
  local key = function(...)
    return table.concat({ name, ... }, ":")
  end

  local headers = { Accept = "application/json" }
  if api_key then
    -- v2's secret API keys: HTTP Basic with the key as the user name.
    headers.Authorization = "Basic "
      .. restock.crypto.base64_encode(api_key .. ":")
  else
    headers.Authorization = "Bearer " .. token
    headers["x-medusa-access-token"] = token -- v1's user API token
  end

  local function get(path, query)
    local parts = {}
    for _, kv in ipairs(query or {}) do
      parts[#parts + 1] = C.urlencode(kv[1]) .. "=" .. C.urlencode(kv[2])
    end
    local url = base .. path .. (#parts > 0 and "?" .. table.concat(parts, "&")
      or "")
    return C.get_json(url, headers)
  end

  -- What was last applied, so that an unchanged row costs no write: in
  -- memory, and in restock.kv for what must survive a restart.
  local applied = {}

  local function changed(k, digest, durable)
    if applied[k] == digest then
      return false
    end
    if durable and restock.kv.get(k) == digest then
      applied[k] = digest
      return false
    end
    return true
  end

  local function remember(k, digest, durable)
    applied[k] = digest
    if durable then
      restock.kv.set(k, digest)
    end
  end

  -- Medusa v2 first; v1 answers 404 on its paths.
  local function detect()
    if version then
      return version
    end
    local probe, res = get("/admin/product-variants", { { "limit", "1" } })
    if probe then
      version = 2
    elseif type(res) == "string" and res:find("answered 404", 1, true) then
      version = 1
    else
      return nil, res
    end
    restock.log.info("medusa: %s speaks the Admin API of Medusa v%d", base,
      version)
    return version
  end

  -- ---- stock locations, sales channels, publishable keys ------------------

  local function sync_locations()
    local rows, err = get("/admin/stock-locations", {
      { "limit", "1000" },
      { "fields", "id,name,*sales_channels" },
    })
    if not rows then
      return nil, err
    end
    local channels, order = {}, {}
    for _, loc in ipairs(rows.stock_locations or {}) do
      local id = C.id(loc.id)
      if id then
        local lname = C.present(loc.name) and loc.name or nil
        if changed(key("loc", id), lname or "") then
          local ok, lerr = restock.stock_locations.upsert { id = id,
            name = lname }
          if not ok then
            return nil, lerr
          end
          remember(key("loc", id), lname or "")
        end
        for _, sc in ipairs(C.present(loc.sales_channels) and loc.sales_channels
          or {}) do
          local sid = C.id(sc.id)
          if sid then
            if not channels[sid] then
              channels[sid] = { name = C.present(sc.name) and sc.name or nil,
                locations = {} }
              order[#order + 1] = sid
            end
            table.insert(channels[sid].locations, id)
          end
        end
      end
    end
    for _, sid in ipairs(order) do
      local ch = channels[sid]
      table.sort(ch.locations)
      local digest = (ch.name or "") .. "|" .. table.concat(ch.locations, ",")
      if changed(key("channel", sid), digest) then
        local ok, cerr = restock.sales_channels.upsert { id = sid,
          name = ch.name, location_ids = ch.locations }
        if not ok then
          return nil, cerr
        end
        remember(key("channel", sid), digest)
      end
    end
    return true
  end

  local function sync_keys()
    local rows = get("/admin/api-keys", {
      { "type", "publishable" },
      { "limit", "1000" },
      { "fields", "id,token,revoked_at,*sales_channels" },
    })
    if not rows then
      return true -- a user without access to keys: nothing to sync
    end
    for _, k in ipairs(rows.api_keys or {}) do
      local token_id = C.id(k.token)
      if token_id and not C.present(k.revoked_at) then
        local ids = {}
        for _, sc in ipairs(C.present(k.sales_channels) and k.sales_channels
          or {}) do
          ids[#ids + 1] = C.id(sc.id)
        end
        table.sort(ids)
        local digest = table.concat(ids, ",")
        if changed(key("key", token_id), digest) then
          local ok, err = restock.publishable_api_keys.upsert {
            id = token_id, sales_channel_ids = ids }
          if ok then
            remember(key("key", token_id), digest)
          else
            restock.log.warn("medusa: publishable key not synced: %s", err)
          end
        end
      end
    end
    return true
  end

  -- ---- variants -------------------------------------------------------------------

  local function variant_of(v, product)
    local title = C.present(v.title) and v.title or nil
    local ptitle = product and C.present(product.title) and product.title
    if ptitle then
      title = title and (ptitle .. " - " .. title) or ptitle
    end
    return {
      id = C.id(v.id),
      product_id = C.id(v.product_id or (product and product.id))
        or restock.json.null,
      sku = C.present(v.sku) and v.sku ~= "" and v.sku or restock.json.null,
      title = title or restock.json.null,
      manage_inventory = v.manage_inventory ~= false,
      allow_backorder = v.allow_backorder == true,
    }
  end

  -- v2: /admin/product-variants updated since the cursor, oldest first.
  local function sync_variants_v2()
    local cursor = restock.kv.get(key("cursor", "variants"))
      or "1970-01-01T00:00:00.000Z"
    -- One run pages through one query; the stored cursor moves after each
    -- page, so that a restart goes on from the last page applied. Rows at
    -- the cursor's own time are read again, which changes nothing.
    local since, offset = cursor, 0
    while true do
      local rows, err = get("/admin/product-variants", {
        { "updated_at[$gte]", since },
        { "order", "updated_at" },
        { "limit", tostring(PAGE) },
        { "offset", tostring(offset) },
        { "fields", "id,title,sku,product_id,manage_inventory,"
          .. "allow_backorder,updated_at,*product,*inventory_items" },
      })
      if not rows then
        return nil, err
      end
      local list, newest = {}, cursor
      for _, v in ipairs(rows.variants or {}) do
        local t = variant_of(v, C.present(v.product) and v.product or nil)
        if t.id then
          list[#list + 1] = t
          for _, link in ipairs(C.present(v.inventory_items)
            and v.inventory_items or {}) do
            local item = C.id(link.inventory_item_id)
            if item then
              C.kv_put(key("item", item), t.id)
              applied[key("item", item)] = t.id
            end
          end
          if C.present(v.updated_at) and v.updated_at > newest then
            newest = v.updated_at
          end
        end
      end
      if #list > 0 then
        local ok, uerr = restock.variants.upsert { variants = list }
        if not ok then
          return nil, uerr
        end
      end
      if newest ~= cursor then
        restock.kv.set(key("cursor", "variants"), newest)
        cursor = newest
      end
      local n = #(rows.variants or {})
      if n < PAGE then
        return true
      end
      offset = offset + n
    end
  end

  -- The variant an inventory item belongs to, from memory or restock.kv.
  local function variant_of_item(item)
    local k = key("item", item)
    if applied[k] == nil then
      applied[k] = restock.kv.get(k) or false
    end
    return applied[k] or nil
  end

  -- v2: every inventory item's levels; a level that changed is applied.
  local function sync_levels_v2()
    local offset = 0
    while true do
      local rows, err = get("/admin/inventory-items", {
        { "limit", tostring(PAGE) },
        { "offset", tostring(offset) },
        { "fields", "id,sku,*location_levels" },
      })
      if not rows then
        return nil, err
      end
      local items = rows.inventory_items or {}
      for _, item in ipairs(items) do
        local item_id = C.id(item.id)
        local vid = item_id and variant_of_item(item_id)
        for _, lvl in ipairs(vid and C.present(item.location_levels)
          and item.location_levels or {}) do
          local loc = C.id(lvl.location_id)
          local stocked = math.tointeger(lvl.stocked_quantity) or 0
          local reserved = math.tointeger(lvl.reserved_quantity) or 0
          if loc then
            local k = key("level", vid, loc)
            local digest = stocked .. "/" .. reserved
            if changed(k, digest, true) then
              local ok, lerr = restock.inventory.set_level {
                variant_id = vid, location_id = loc,
                stocked_quantity = stocked >= 0 and stocked or 0,
                reserved_quantity = reserved >= 0 and reserved or 0,
              }
              if not ok then
                return nil, "level of " .. vid .. " at " .. loc .. ": " .. lerr
              end
              remember(k, digest, true)
            end
          end
        end
      end
      if #items < PAGE then
        return true
      end
      offset = offset + #items
    end
  end

  -- v1: products updated since the cursor, with their variants'
  -- inventory_quantity (one warehouse).
  local function sync_variants_v1()
    local cursor = restock.kv.get(key("cursor", "variants"))
      or "1970-01-01T00:00:00.000Z"
    -- One run pages through one query; the stored cursor moves after each
    -- page, so that a restart goes on from the last page applied. Rows at
    -- the cursor's own time are read again, which changes nothing.
    local since, offset = cursor, 0
    while true do
      local rows, err = get("/admin/products", {
        { "updated_at[gte]", since },
        { "order", "updated_at" },
        { "limit", tostring(PAGE) },
        { "offset", tostring(offset) },
        { "expand", "variants" },
      })
      if not rows then
        return nil, err
      end
      local list, newest = {}, cursor
      for _, p in ipairs(rows.products or {}) do
        for _, v in ipairs(C.present(p.variants) and p.variants or {}) do
          local t = variant_of(v, p)
          if t.id then
            local q = math.tointeger(v.inventory_quantity)
            if q then
              t.inventory_quantity = q
            end
            list[#list + 1] = t
          end
        end
        if C.present(p.updated_at) and p.updated_at > newest then
          newest = p.updated_at
        end
      end
      if #list > 0 then
        local ok, uerr = restock.variants.upsert { variants = list }
        if not ok then
          return nil, uerr
        end
      end
      if newest ~= cursor then
        restock.kv.set(key("cursor", "variants"), newest)
        cursor = newest
      end
      local n = #(rows.products or {})
      if n < PAGE then
        return true
      end
      offset = offset + n
    end
  end

  -- ---- orders ------------------------------------------------------------------------

  local function order_items(o)
    local items = {}
    for _, li in ipairs(C.present(o.items) and o.items or {}) do
      local vid = C.id(li.variant_id)
      if vid then
        local qty = math.tointeger(li.quantity) or 1
        local micros
        if version == 1 then
          -- v1 amounts are in the currency's minor unit.
          micros = C.minor_to_micros((tonumber(li.unit_price) or 0) * qty,
            o.currency_code)
        elseif C.present(li.total) then
          micros = C.micros(li.total)
        end
        micros = micros or (C.micros(li.unit_price) or 0) * qty
        items[#items + 1] = { variant_id = vid, quantity = qty,
          amount = C.decimal(micros) }
      end
    end
    return items
  end

  local function sync_orders()
    -- The first poll starts from now: orders placed before restockd was
    -- connected were not sent by any notification of its.
    local cursor = restock.kv.get(key("cursor", "orders"))
    if not cursor then
      cursor = C.iso(os.time() * 1000)
      restock.kv.set(key("cursor", "orders"), cursor)
    end
    local op = version == 1 and "created_at[gte]" or "created_at[$gte]"
    local since, offset = cursor, 0
    while true do
      local query = {
        { op, since },
        { "order", "created_at" },
        { "limit", tostring(PAGE) },
        { "offset", tostring(offset) },
      }
      if version == 1 then
        query[#query + 1] = { "expand", "items" }
      else
        query[#query + 1] = { "fields",
          "id,email,currency_code,created_at,*items" }
      end
      local rows, err = get("/admin/orders", query)
      if not rows then
        return nil, err
      end
      local newest = cursor
      for _, o in ipairs(rows.orders or {}) do
        local email = C.present(o.email) and o.email ~= "" and o.email or nil
        local ok, oerr = restock.orders.record {
          order_id = C.id(o.id),
          email = email,
          currency = C.present(o.currency_code) and o.currency_code or "XXX",
          created_at = C.present(o.created_at) and o.created_at or nil,
          items = order_items(o),
        }
        if not ok then
          return nil, "order " .. tostring(o.id) .. ": " .. oerr
        end
        if C.present(o.created_at) and o.created_at > newest then
          newest = o.created_at
        end
      end
      if newest ~= cursor then
        restock.kv.set(key("cursor", "orders"), newest)
        cursor = newest
      end
      local n = #(rows.orders or {})
      if n < PAGE then
        return true
      end
      offset = offset + n
    end
  end

  local function poll()
    local v, err = detect()
    if not v then
      return nil, "medusa: " .. tostring(err)
    end
    local ok
    if v == 2 then
      ok, err = sync_locations()
      if ok then
        ok, err = sync_keys()
      end
      if ok then
        ok, err = sync_variants_v2()
      end
      if ok then
        ok, err = sync_levels_v2()
      end
    else
      ok, err = sync_variants_v1()
    end
    if ok then
      ok, err = sync_orders()
    end
    if not ok then
      return nil, "medusa: " .. tostring(err)
    end
    return true
  end

  restock.every(interval, poll, { name = name .. ":poll" })
end

return M
