-- The admin API for variants, and the bearer token that guards /admin.
local helpers = require "spec.support.helpers"

local null = helpers.null
local admin = helpers.admin

local VARIANT_KEYS = {
  "id", "product_id", "sku", "title", "inventory_quantity",
  "allow_backorder", "manage_inventory", "quantity", "created_at",
  "updated_at",
}

-- Asserts that v carries every key of a variant in a GET answer.
local function assert_variant_shape(v)
  assert.equals("table", type(v))
  for _, k in ipairs(VARIANT_KEYS) do
    assert.truthy(v[k] ~= nil, "variant has no key " .. k)
  end
  assert.are_not.equal(null, v.created_at)
  assert.are_not.equal(null, v.updated_at)
end

local function get_variant(server, id)
  return admin(server, "GET", "/admin/variants/" .. helpers.urlencode(id))
end

describe("admin authorization", function()
  after_each(helpers.cleanup)

  local routes = {
    { "GET", "/admin/variants/v1" },
    { "POST", "/admin/variants", { id = "v1" } },
    { "POST", "/admin/variants/v1", { inventory_quantity = 1 } },
    { "POST", "/admin/products/p1/variants/v1", { inventory_quantity = 1 } },
    { "GET", "/admin/restock-notifications" },
    { "DELETE", "/admin/restock-notifications?email=a%40example.com" },
  }

  -- Sends every admin route with the given headers and expects 401.
  local function expect_all_401(server, headers)
    for _, r in ipairs(routes) do
      local res = helpers.request(server, r[1], r[2],
        { headers = headers, json = r[3] })
      local ok, err = pcall(helpers.assert_error, res, 401, "unauthorized")
      assert(ok, r[1] .. " " .. r[2] .. ": " .. tostring(err))
    end
  end

  it("answers 401 on every route when no token is configured", function()
    local server = helpers.start({ env = { RESTOCK_ADMIN_TOKEN = false } })
    expect_all_401(server, { Authorization = "Bearer secret-token" })
    expect_all_401(server, {})
  end)

  it("answers 401 when an empty token is configured", function()
    local server = helpers.start({ env = { RESTOCK_ADMIN_TOKEN = "" } })
    expect_all_401(server, { Authorization = "Bearer " })
    expect_all_401(server, { Authorization = "Bearer" })
  end)

  it("answers 401 for a wrong token", function()
    local server = helpers.start()
    expect_all_401(server, { Authorization = "Bearer wrong-token" })
    expect_all_401(server, { Authorization = "Bearer secret-token-and-more" })
    expect_all_401(server, { Authorization = "Bearer secret-toke" })
  end)

  it("answers 401 when the Authorization header is missing", function()
    local server = helpers.start()
    expect_all_401(server, {})
  end)

  it("answers 401 for a scheme other than Bearer", function()
    local server = helpers.start()
    expect_all_401(server, { Authorization = "Basic secret-token" })
    expect_all_401(server, { Authorization = "secret-token" })
  end)

  it("does not store anything from an unauthorized request", function()
    local server = helpers.start()
    helpers.request(server, "POST", "/admin/variants",
      { json = { id = "sneaky" } })
    helpers.assert_error(get_variant(server, "sneaky"), 404, "not_found")
  end)

  it("lets the right token through", function()
    local server = helpers.start()
    local res = admin(server, "POST", "/admin/variants", { id = "v1" })
    helpers.assert_status(res, 200)
  end)
end)

describe("admin variants", function()
  after_each(helpers.cleanup)

  local server
  before_each(function()
    server = helpers.start()
  end)

  describe("POST /admin/variants", function()
    it("creates one variant with the defaults", function()
      local res = admin(server, "POST", "/admin/variants", { id = "v1" })
      helpers.assert_status(res, 200)
      assert.equals(1, #res.json.variants)
      local v = res.json.variants[1]
      assert.equals("v1", v.id)
      assert.equals(0, v.inventory_quantity)
      assert.equals(true, v.manage_inventory)
      assert.equals(false, v.allow_backorder)

      res = get_variant(server, "v1")
      helpers.assert_status(res, 200)
      v = res.json.variant
      assert_variant_shape(v)
      assert.equals("v1", v.id)
      assert.equals(null, v.product_id)
      assert.equals(null, v.sku)
      assert.equals(null, v.title)
      assert.equals(0, v.inventory_quantity)
      assert.equals(0, v.quantity)
      assert.equals(true, v.manage_inventory)
      assert.equals(false, v.allow_backorder)
    end)

    it("stores every field it is given", function()
      local res = admin(server, "POST", "/admin/variants", {
        id = "v2", product_id = "p1", sku = "SKU-2", title = "Blue / M",
        inventory_quantity = 7, allow_backorder = true,
        manage_inventory = false,
      })
      helpers.assert_status(res, 200)
      local v = get_variant(server, "v2").json.variant
      assert_variant_shape(v)
      assert.equals("p1", v.product_id)
      assert.equals("SKU-2", v.sku)
      assert.equals("Blue / M", v.title)
      assert.equals(7, v.inventory_quantity)
      assert.equals(7, v.quantity)
      assert.equals(true, v.allow_backorder)
      assert.equals(false, v.manage_inventory)
    end)

    it("accepts null for the string fields", function()
      local res = admin(server, "POST", "/admin/variants",
        '{"id":"v3","product_id":null,"sku":null,"title":null}')
      helpers.assert_status(res, 200)
      local v = get_variant(server, "v3").json.variant
      assert.equals(null, v.product_id)
      assert.equals(null, v.sku)
      assert.equals(null, v.title)
    end)

    it("creates a list of variants", function()
      local res = admin(server, "POST", "/admin/variants", { variants = {
        { id = "a", inventory_quantity = 1 },
        { id = "b", inventory_quantity = 2 },
        { id = "c" },
      } })
      helpers.assert_status(res, 200)
      local ids = {}
      for i, v in ipairs(res.json.variants) do
        ids[i] = v.id
      end
      assert.same({ "a", "b", "c" }, ids)
      assert.equals(1, get_variant(server, "a").json.variant.quantity)
      assert.equals(2, get_variant(server, "b").json.variant.quantity)
      assert.equals(0, get_variant(server, "c").json.variant.quantity)
    end)

    it("updates a variant posted again", function()
      admin(server, "POST", "/admin/variants",
        { id = "v1", title = "Old", inventory_quantity = 1 })
      local res = admin(server, "POST", "/admin/variants",
        { id = "v1", title = "New", inventory_quantity = 4 })
      helpers.assert_status(res, 200)
      assert.equals("New", res.json.variants[1].title)
      local v = get_variant(server, "v1").json.variant
      assert.equals("New", v.title)
      assert.equals(4, v.inventory_quantity)
      assert.equals(4, v.quantity)
    end)

    it("rejects a variant without an id", function()
      local res = admin(server, "POST", "/admin/variants",
        { inventory_quantity = 3 })
      helpers.assert_error(res, 400, "invalid_data")
    end)

    local bad = {
      { "a numeric id", { id = 5 } },
      { "an empty id", { id = "" } },
      { "a string quantity", { id = "x", inventory_quantity = "5" } },
      { "a fractional quantity", { id = "x", inventory_quantity = 1.5 } },
      { "a string boolean", { id = "x", allow_backorder = "yes" } },
      { "a numeric manage_inventory", { id = "x", manage_inventory = 1 } },
      { "a numeric title", { id = "x", title = 12 } },
      { "a table sku", { id = "x", sku = { "a" } } },
      { "an unknown field", { id = "x", colour = "red" } },
    }
    for _, case in ipairs(bad) do
      it("rejects " .. case[1] .. " with 400 invalid_data", function()
        local res = admin(server, "POST", "/admin/variants", case[2])
        helpers.assert_error(res, 400, "invalid_data")
        if type(case[2].id) == "string" and case[2].id ~= "" then
          helpers.assert_error(get_variant(server, case[2].id), 404,
            "not_found")
        end
      end)
    end

    it("rejects bad JSON with 400 invalid_data", function()
      local res = admin(server, "POST", "/admin/variants", '{"id": "x",')
      helpers.assert_error(res, 400, "invalid_data")
    end)

    it("rejects a body that is not an object", function()
      local res = admin(server, "POST", "/admin/variants", '["x"]')
      helpers.assert_error(res, 400, "invalid_data")
    end)

    it("rejects a whole list for one bad entry, naming its index", function()
      local res = admin(server, "POST", "/admin/variants", { variants = {
        { id = "good-1", inventory_quantity = 1 },
        { id = "good-2" },
        { id = "bad", inventory_quantity = "many" },
        { inventory_quantity = 2 },
      } })
      helpers.assert_error(res, 400, "invalid_data")
      assert.truthy(res.json.message:find("variants[2]", 1, true),
        res.json.message)
      helpers.assert_error(get_variant(server, "good-1"), 404, "not_found")
      helpers.assert_error(get_variant(server, "good-2"), 404, "not_found")
    end)

    it("names index 0 when the first entry lacks an id", function()
      local res = admin(server, "POST", "/admin/variants", { variants = {
        { title = "no id" }, { id = "fine" },
      } })
      helpers.assert_error(res, 400, "invalid_data")
      assert.truthy(res.json.message:find("variants[0]", 1, true),
        res.json.message)
      helpers.assert_error(get_variant(server, "fine"), 404, "not_found")
    end)

    it("does not change existing variants when a list is rejected", function()
      admin(server, "POST", "/admin/variants",
        { id = "kept", inventory_quantity = 3 })
      local res = admin(server, "POST", "/admin/variants", { variants = {
        { id = "kept", inventory_quantity = 9 },
        { id = "broken", manage_inventory = "no" },
      } })
      helpers.assert_error(res, 400, "invalid_data")
      assert.truthy(res.json.message:find("variants[1]", 1, true),
        res.json.message)
      assert.equals(3, get_variant(server, "kept").json.variant
        .inventory_quantity)
    end)
  end)

  describe("GET /admin/variants/{id}", function()
    it("answers 404 not_found for an unknown id", function()
      local res = get_variant(server, "ghost")
      helpers.assert_error(res, 404, "not_found",
        "Variant with id: ghost was not found")
    end)

    it("reports quantity equal to inventory_quantity", function()
      admin(server, "POST", "/admin/variants",
        { id = "q", inventory_quantity = 12 })
      local v = get_variant(server, "q").json.variant
      assert.equals(12, v.inventory_quantity)
      assert.equals(12, v.quantity)
    end)

    it("keeps a negative inventory_quantity", function()
      local res = admin(server, "POST", "/admin/variants",
        { id = "oversold", inventory_quantity = -2 })
      helpers.assert_status(res, 200)
      local v = get_variant(server, "oversold").json.variant
      assert.equals(-2, v.inventory_quantity)
      assert.equals(-2, v.quantity)
    end)
  end)

  describe("POST /admin/variants/{id}", function()
    it("creates a missing variant with the defaults", function()
      local res = admin(server, "POST", "/admin/variants/new-one",
        { title = "Fresh" })
      helpers.assert_status(res, 200)
      local v = res.json.variant
      assert_variant_shape(v)
      assert.equals("new-one", v.id)
      assert.equals("Fresh", v.title)
      assert.equals(0, v.inventory_quantity)
      assert.equals(true, v.manage_inventory)
      assert.equals(false, v.allow_backorder)
      assert.equals("Fresh", get_variant(server, "new-one").json.variant.title)
    end)

    it("updates only the fields it is given", function()
      admin(server, "POST", "/admin/variants", { id = "v1", product_id = "p1",
        sku = "S1", title = "T1", inventory_quantity = 2,
        allow_backorder = true, manage_inventory = true })
      local res = admin(server, "POST", "/admin/variants/v1",
        { inventory_quantity = 9 })
      helpers.assert_status(res, 200)
      local v = get_variant(server, "v1").json.variant
      assert.equals(9, v.inventory_quantity)
      assert.equals(9, v.quantity)
      assert.equals("p1", v.product_id)
      assert.equals("S1", v.sku)
      assert.equals("T1", v.title)
      assert.equals(true, v.allow_backorder)
      assert.equals(true, v.manage_inventory)
    end)

    it("can set a string field back to null", function()
      admin(server, "POST", "/admin/variants", { id = "v1", sku = "S1" })
      local res = admin(server, "POST", "/admin/variants/v1", '{"sku":null}')
      helpers.assert_status(res, 200)
      assert.equals(null, get_variant(server, "v1").json.variant.sku)
    end)

    it("accepts a body id equal to the path id", function()
      local res = admin(server, "POST", "/admin/variants/same",
        { id = "same", inventory_quantity = 1 })
      helpers.assert_status(res, 200)
      assert.equals("same", res.json.variant.id)
    end)

    it("rejects a body id different from the path id", function()
      local res = admin(server, "POST", "/admin/variants/one",
        { id = "two", inventory_quantity = 1 })
      helpers.assert_error(res, 400, "invalid_data")
      helpers.assert_error(get_variant(server, "one"), 404, "not_found")
      helpers.assert_error(get_variant(server, "two"), 404, "not_found")
    end)

    it("rejects a wrong type without changing the variant", function()
      admin(server, "POST", "/admin/variants",
        { id = "v1", inventory_quantity = 2 })
      local res = admin(server, "POST", "/admin/variants/v1",
        { inventory_quantity = "lots" })
      helpers.assert_error(res, 400, "invalid_data")
      assert.equals(2, get_variant(server, "v1").json.variant
        .inventory_quantity)
    end)

    it("rejects an unknown field", function()
      local res = admin(server, "POST", "/admin/variants/v1", { price = 3 })
      helpers.assert_error(res, 400, "invalid_data")
    end)
  end)

  describe("POST /admin/products/{product_id}/variants/{id}", function()
    it("creates the variant under that product", function()
      local res = admin(server, "POST", "/admin/products/prod_1/variants/v1",
        { inventory_quantity = 3 })
      helpers.assert_status(res, 200)
      assert.equals("v1", res.json.variant.id)
      assert.equals("prod_1", res.json.variant.product_id)
      local v = get_variant(server, "v1").json.variant
      assert.equals("prod_1", v.product_id)
      assert.equals(3, v.inventory_quantity)
    end)

    it("updates a variant of the same product", function()
      admin(server, "POST", "/admin/variants",
        { id = "v1", product_id = "prod_1", title = "T" })
      local res = admin(server, "POST", "/admin/products/prod_1/variants/v1",
        { inventory_quantity = 5 })
      helpers.assert_status(res, 200)
      local v = get_variant(server, "v1").json.variant
      assert.equals(5, v.inventory_quantity)
      assert.equals("T", v.title)
    end)

    it("adopts a variant that has no product yet", function()
      admin(server, "POST", "/admin/variants", { id = "v1" })
      local res = admin(server, "POST", "/admin/products/prod_9/variants/v1",
        { inventory_quantity = 1 })
      helpers.assert_status(res, 200)
      assert.equals("prod_9", get_variant(server, "v1").json.variant
        .product_id)
    end)

    it("answers 404 for a variant of another product", function()
      admin(server, "POST", "/admin/variants",
        { id = "v1", product_id = "prod_1", inventory_quantity = 1 })
      local res = admin(server, "POST", "/admin/products/prod_2/variants/v1",
        { inventory_quantity = 8 })
      helpers.assert_error(res, 404, "not_found")
      local v = get_variant(server, "v1").json.variant
      assert.equals("prod_1", v.product_id)
      assert.equals(1, v.inventory_quantity)
    end)

    it("decodes both path parameters", function()
      local res = admin(server, "POST",
        "/admin/products/prod%201/variants/var%201", { title = "x" })
      helpers.assert_status(res, 200)
      local v = get_variant(server, "var 1").json.variant
      assert.equals("prod 1", v.product_id)
    end)
  end)
end)
