-- POST /admin/inventory/batch (contract sections 4 and 5): entries set a
-- variant's inventory_quantity or one of its inventory levels; 1 to 10,000
-- of them, all or nothing; a bad entry answers 400 naming updates[N], the
-- first bad one, and nothing of the batch is stored or scheduled.
local helpers = require "spec.support.helpers"
local cjson = require "cjson"
local W = require "spec.support.warehouse"

-- Posts a batch (a list of entries, or a raw body string) and returns the
-- response.
local function batch(server, updates, timeout)
  local body = type(updates) == "string" and updates
    or cjson.encode({ updates = updates })
  local conn = helpers.connect(server, timeout or 10)
  local res = conn:request("POST", "/admin/inventory/batch", { body = body,
    headers = { Authorization = "Bearer " .. helpers.ADMIN_TOKEN,
      ["Content-Type"] = "application/json" } })
  conn:close()
  return res
end

-- Asserts a 400 invalid_data whose message starts with updates[index]:.
local function assert_rejected(res, index)
  helpers.assert_error(res, 400, "invalid_data")
  local prefix = string.format("updates[%d]:", index)
  assert(res.json.message:sub(1, #prefix) == prefix, string.format(
    "expected a message starting with %s, got %s", prefix,
    helpers.describe(res)))
end

describe("POST /admin/inventory/batch with inventory levels", function()
  after_each(helpers.cleanup)

  local server
  before_each(function()
    server = W.start()
    W.two_regions(server)
    W.variants(server, "multi", "plain")
    W.level(server, "multi", "loc_eu", { stocked_quantity = 0 })
    W.level(server, "multi", "loc_us",
      { stocked_quantity = 1, reserved_quantity = 1 })
    W.subscribed(server, "multi", "eu@example.com", { channel = "sc_eu" },
      "sc_eu")
    W.subscribed(server, "multi", "any@example.com", nil, nil)
    W.subscribed(server, "plain", "plain@example.com", nil, nil)
  end)

  -- Everything the before_each set up is unchanged and nothing fired.
  local function assert_untouched()
    local multi, plain = W.variant(server, "multi"), W.variant(server, "plain")
    assert.equals(0, multi.quantity)
    assert.equals(0, multi.inventory_quantity)
    assert.equals(0, plain.quantity)
    assert.equals(0, plain.inventory_quantity)
    -- Posting a level without quantities keeps (and shows) them.
    local eu = W.level(server, "multi", "loc_eu")
    assert.equals(0, eu.stocked_quantity)
    assert.equals(0, eu.reserved_quantity)
    local us = W.level(server, "multi", "loc_us")
    assert.equals(1, us.stocked_quantity)
    assert.equals(1, us.reserved_quantity)
    W.settle(server)
    assert.same({}, W.events_for(server, "multi", "sc_eu"), W.dump(server))
    assert.same({}, W.events_for(server, "multi", nil), W.dump(server))
    assert.same({}, W.events_for(server, "plain", nil), W.dump(server))
    -- Every subscription is still active (oldest first).
    assert.same({ "eu@example.com", "any@example.com", "plain@example.com" },
      W.list(server, {}))
  end

  it("applies a valid mixed batch and fires the raised scopes", function()
    local res = batch(server, {
      { variant_id = "multi", location_id = "loc_eu", stocked_quantity = 3 },
      { variant_id = "plain", inventory_quantity = 2 },
      { variant_id = "multi", location_id = "loc_us", reserved_quantity = 0 },
    })
    helpers.assert_status(res, 200)
    assert.same({ updated = 3 }, res.json)
    local multi = W.variant(server, "multi")
    assert.equals(4, multi.quantity)
    assert.equals(4, multi.inventory_quantity)
    assert.equals(2, W.variant(server, "plain").quantity)
    assert.same({ "eu@example.com" }, W.wait_emails(server, "multi", "sc_eu"))
    assert.same({ "any@example.com" }, W.wait_emails(server, "multi", nil))
    assert.same({ "plain@example.com" }, W.wait_emails(server, "plain", nil))
  end)

  it("creates a level that did not exist, with 0 for a missing quantity",
    function()
      W.location(server, "loc_new", "New")
      helpers.assert_status(batch(server, { { variant_id = "plain",
        location_id = "loc_new", reserved_quantity = 2 } }), 200)
      local level = W.level(server, "plain", "loc_new")
      assert.equals(0, level.stocked_quantity)
      assert.equals(2, level.reserved_quantity)
      assert.equals(-2, level.available_quantity)
      -- plain now has levels: its quantity is their sum.
      assert.equals(-2, W.variant(server, "plain").quantity)
    end)

  it("rejects the whole batch when entry 2 names an unknown location",
    function()
      local res = batch(server, {
        { variant_id = "multi", location_id = "loc_eu", stocked_quantity = 3 },
        { variant_id = "plain", inventory_quantity = 5 },
        { variant_id = "multi", location_id = "loc_mars", stocked_quantity = 1 },
        { variant_id = "multi", location_id = "loc_us", reserved_quantity = 0 },
      })
      assert_rejected(res, 2)
      assert.truthy(res.json.message:find("loc_mars", 1, true),
        helpers.describe(res))
      assert_untouched()
    end)

  it("rejects inventory_quantity on a variant with levels, naming it",
    function()
      local res = batch(server, {
        { variant_id = "plain", inventory_quantity = 5 },
        { variant_id = "multi", inventory_quantity = 3 },
      })
      assert_rejected(res, 1)
      assert_untouched()
    end)

  local bad = {
    { "an unknown variant", { variant_id = "ghost", inventory_quantity = 1 } },
    { "an unknown variant with a location",
      { variant_id = "ghost", location_id = "loc_eu", stocked_quantity = 1 } },
    { "a negative stocked_quantity",
      { variant_id = "multi", location_id = "loc_eu", stocked_quantity = -1 } },
    { "a negative reserved_quantity",
      { variant_id = "multi", location_id = "loc_eu", reserved_quantity = -1 } },
    { "a fractional stocked_quantity",
      { variant_id = "multi", location_id = "loc_eu", stocked_quantity = 1.5 } },
    { "a string stocked_quantity",
      { variant_id = "multi", location_id = "loc_eu", stocked_quantity = "3" } },
    { "a missing variant_id", { inventory_quantity = 1 } },
    { "a non-integer inventory_quantity",
      { variant_id = "plain", inventory_quantity = 1.25 } },
    { "an entry that is not an object", "plain" },
  }
  for _, case in ipairs(bad) do
    it("rejects " .. case[1] .. " at its index", function()
      local res = batch(server, {
        { variant_id = "plain", inventory_quantity = 5 },
        { variant_id = "multi", location_id = "loc_eu", stocked_quantity = 2 },
        { variant_id = "multi", location_id = "loc_us", reserved_quantity = 0 },
        case[2],
        { variant_id = "plain", inventory_quantity = 7 },
      })
      assert_rejected(res, 3)
      assert_untouched()
    end)
  end

  it("names the first bad entry when there are several", function()
    local res = batch(server, {
      { variant_id = "plain", inventory_quantity = 5 },
      { variant_id = "multi", inventory_quantity = 1 },
      { variant_id = "ghost", inventory_quantity = 1 },
    })
    assert_rejected(res, 1)
  end)

  it("rejects an empty batch and one of 10,001 updates", function()
    helpers.assert_error(batch(server, '{"updates": []}'), 400,
      "invalid_data")
    helpers.assert_error(batch(server, "{}"), 400, "invalid_data")
    local many = {}
    for i = 1, 10001 do
      many[i] = { variant_id = "plain", inventory_quantity = i }
    end
    helpers.assert_error(batch(server, many, 60), 400, "invalid_data")
    assert_untouched()
  end)
end)

describe("POST /admin/inventory/batch with 10,000 updates", function()
  after_each(helpers.cleanup)

  it("updates them all in one request", function()
    local server = W.start()
    local N = 10000
    local function id(i)
      return string.format("bulk_%05d", i)
    end
    for chunk = 0, N / 1000 - 1 do
      local list = {}
      for i = 1, 1000 do
        list[i] = { id = id(chunk * 1000 + i - 1) }
      end
      local res = helpers.admin(server, "POST", "/admin/variants",
        cjson.encode({ variants = list }))
      helpers.assert_status(res, 200)
      assert.equals(1000, #res.json.variants)
    end
    -- A few of them have subscribers, who must hear of the restock.
    local watched = { 0, 4321, N - 1 }
    for _, i in ipairs(watched) do
      W.subscribed(server, id(i), "bulk" .. i .. "@example.com", nil, nil)
    end

    local updates = {}
    for i = 0, N - 1 do
      updates[i + 1] = { variant_id = id(i), inventory_quantity = i % 97 + 1 }
    end
    local res = batch(server, updates, 60)
    helpers.assert_status(res, 200)
    assert.same({ updated = N }, res.json)

    for _, i in ipairs({ 0, 1, 96, 97, 4321, 5000, 9998, N - 1 }) do
      local v = W.variant(server, id(i))
      assert.equals(i % 97 + 1, v.inventory_quantity, id(i))
      assert.equals(i % 97 + 1, v.quantity, id(i))
    end
    for _, i in ipairs(watched) do
      assert.same({ "bulk" .. i .. "@example.com" },
        W.wait_emails(server, id(i), nil, 10))
    end
  end)
end)
