-- GET /metrics (contract section 5, Operations): the Prometheus text
-- exposition, its families, and counters, histograms and gauges that move by
-- exactly what the traffic of a test should move them by.
local helpers = require "spec.support.helpers"
local prom = require "spec.support.prom"

local admin = helpers.admin

local RESTOCKED = "restock-notification.restocked"
local SUBSCRIBED = "restock-notification.subscribed"
local UPDATED = "product-variant.updated"

local REQUESTS = "restockd_http_requests_total"
local DURATION = "restockd_http_request_duration_seconds"
local HANDLER_DURATION = "restockd_handler_duration_seconds"

-- Every family the contract and the operator docs promise, with its type.
local FAMILIES = {
  restockd_http_requests_total = "counter",
  restockd_http_request_duration_seconds = "histogram",
  restockd_active_subscriptions = "gauge",
  restockd_events_emitted_total = "counter",
  restockd_events_delivered_total = "counter",
  restockd_events_failed_total = "counter",
  restockd_events_dead_total = "counter",
  restockd_handler_duration_seconds = "histogram",
  restockd_pending_checks = "gauge",
  restockd_pending_deliveries = "gauge",
  restockd_emails_notified_total = "counter",
  restockd_build_info = "gauge",
  process_resident_memory_bytes = "gauge",
  process_open_fds = "gauge",
}

-- The route patterns of contract section 5; a route label must be one of
-- them or "unmatched", never a raw path.
local PATTERNS = {
  ["/health"] = true,
  ["/metrics"] = true,
  ["/restock-notifications/variants/{variant_id}"] = true,
  ["/restock-notifications/unsubscribe"] = true,
  ["/admin/variants"] = true,
  ["/admin/variants/{id}"] = true,
  ["/admin/products/{product_id}/variants/{id}"] = true,
  ["/admin/inventory/batch"] = true,
  ["/admin/stock-locations"] = true,
  ["/admin/sales-channels"] = true,
  ["/admin/inventory-levels"] = true,
  ["/admin/publishable-api-keys"] = true,
  ["/admin/restock-notifications"] = true,
  ["/admin/events"] = true,
  ["/admin/events/{id}/retry"] = true,
  unmatched = true,
  malformed = true,
}

-- Scrapes the server: asserts the answer and returns the parsed scrape.
local function scrape(server)
  local res = helpers.request(server, "GET", "/metrics")
  helpers.assert_status(res, 200)
  local ok, m = pcall(prom.parse, res.body)
  assert(ok, "the /metrics answer does not parse: " .. tostring(m)
    .. "\n" .. res.body)
  m.body = res.body
  return m
end

-- Polls /metrics until pred(scrape) is true and returns that scrape, or
-- fails with the last one after timeout seconds.
local function wait_metrics(server, pred, timeout, what)
  local last
  local m = helpers.wait_for(function()
    last = scrape(server)
    if pred(last) then
      return last
    end
  end, timeout or 5)
  assert(m, "timed out waiting for " .. (what or "the metrics")
    .. "; last scrape:\n" .. (last and last.body or "none"))
  return m
end

local function req_count(m, route, status)
  return m:count(REQUESTS, { route = route, status = tostring(status) })
end

local function subscribe(server, variant_id, email)
  local res = helpers.request(server, "POST", "/restock-notifications/variants/"
    .. helpers.urlencode(variant_id), { json = { email = email } })
  helpers.assert_status(res, 201)
end

local function variants(server, list)
  helpers.assert_status(admin(server, "POST", "/admin/variants",
    { variants = list }), 200)
end

describe("GET /metrics", function()
  after_each(helpers.cleanup)

  it("answers the text exposition format without the admin token",
    function()
      local server = helpers.start { env = { RESTOCK_ADMIN_TOKEN = false } }
      local res = helpers.request(server, "GET", "/metrics")
      helpers.assert_status(res, 200)
      assert.equals("text/plain; version=0.0.4; charset=utf-8",
        res.headers["content-type"])
      local m = prom.parse(res.body)
      for name, kind in pairs(FAMILIES) do
        assert.equals(kind, m.types[name], "TYPE of " .. name .. " in\n"
          .. res.body)
        assert.truthy(m.help[name] and m.help[name]:match("%S"),
          "no HELP text for " .. name)
      end
      -- Every sample belongs to a family declared before it, and the
      -- samples of a family are not split by another family's.
      local seen_families, current = {}, nil
      for _, s in ipairs(m.samples) do
        local family = m:family_of(s.name)
        assert.truthy(family, "a sample of no declared family: " .. s.line)
        assert.truthy(m.type_line[family] < s.n,
          "a sample before its family's TYPE line: " .. s.line)
        if family ~= current then
          assert.is_nil(seen_families[family],
            "the samples of " .. family .. " are split: " .. s.line)
          seen_families[family] = true
          current = family
        end
        assert.is_nil(s.timestamp, "a sample with a timestamp: " .. s.line)
      end
      -- The gauges without labels are always there, with sane values.
      for _, g in ipairs({ "restockd_active_subscriptions",
          "restockd_pending_checks", "restockd_pending_deliveries" }) do
        assert.equals(0, m:value(g), g .. " on a fresh server")
      end
      assert.truthy(m:value("process_resident_memory_bytes") > 1024 * 1024,
        "process_resident_memory_bytes is not a plausible size")
      assert.truthy(m:value("process_open_fds") >= 3,
        "process_open_fds is not a plausible count")
      -- The admin API itself is still closed.
      helpers.assert_error(helpers.request(server, "GET", "/admin/events"),
        401, "unauthorized")
    end)

  it("counts a request only once it is answered, the scrape included",
    function()
      local server = helpers.start()
      local first = scrape(server)
      assert.equals(0, req_count(first, "/metrics", 200),
        "the first scrape counted itself:\n" .. first.body)
      local second = scrape(server)
      assert.equals(1, req_count(second, "/metrics", 200))
      local third = scrape(server)
      assert.equals(2, req_count(third, "/metrics", 200))
      assert.equals(2, third:value(DURATION .. "_count",
        { route = "/metrics" }))
    end)

  it("counts requests by route pattern and status, exactly", function()
    local server = helpers.start()
    variants(server, { { id = "sold", inventory_quantity = 0 },
      { id = "instock", inventory_quantity = 4 } })
    local before = scrape(server)

    for _ = 1, 3 do
      helpers.assert_status(helpers.request(server, "GET", "/health"), 200)
    end
    for _ = 1, 2 do
      helpers.assert_error(admin(server, "GET", "/admin/variants/nope-4711"),
        404, "not_found")
    end
    helpers.assert_status(admin(server, "GET", "/admin/variants/sold"), 200)
    subscribe(server, "sold", "ann@example.com")
    subscribe(server, "sold", "bob@example.com")
    helpers.assert_error(helpers.request(server, "POST",
      "/restock-notifications/variants/instock",
      { json = { email = "cy@example.com" } }), 400, "not_allowed")
    helpers.assert_error(helpers.request(server, "GET",
      "/no/such/route/8812"), 404, "not_found")
    -- Keep-alive requests count one by one as well.
    local conn = helpers.connect(server)
    for _ = 1, 4 do
      helpers.assert_status(conn:request("GET", "/health"), 200)
    end
    conn:close()

    local after = scrape(server)
    local function delta(route, status)
      return req_count(after, route, status) - req_count(before, route, status)
    end
    assert.equals(7, delta("/health", 200))
    assert.equals(2, delta("/admin/variants/{id}", 404))
    assert.equals(1, delta("/admin/variants/{id}", 200))
    assert.equals(2, delta("/restock-notifications/variants/{variant_id}",
      201))
    assert.equals(1, delta("/restock-notifications/variants/{variant_id}",
      400))
    assert.equals(1, delta("unmatched", 404))
    assert.equals(1, delta("/metrics", 200)) -- the first scrape
    -- Nothing else moved: the sum over every series grew by exactly the
    -- requests made above.
    assert.equals(7 + 2 + 1 + 2 + 1 + 1 + 1,
      after:sum(REQUESTS) - before:sum(REQUESTS),
      "unexpected series moved:\n" .. after.body)
    -- The duration histogram saw the same requests.
    local function hdelta(route)
      return after:count(DURATION .. "_count", { route = route })
        - before:count(DURATION .. "_count", { route = route })
    end
    assert.equals(7, hdelta("/health"))
    assert.equals(3, hdelta("/admin/variants/{id}"))
    assert.equals(3, hdelta("/restock-notifications/variants/{variant_id}"))
    assert.equals(1, hdelta("unmatched"))
    local ok, err = after:check_histograms()
    assert(ok, err)
  end)

  it("labels requests by route pattern, never by the raw path", function()
    local server = helpers.start()
    variants(server, { { id = "rawid-a1", inventory_quantity = 0 } })
    admin(server, "GET", "/admin/variants/rawid-b2")
    admin(server, "POST", "/admin/variants/rawid-a1", { title = "x" })
    admin(server, "POST", "/admin/products/rawid-p3/variants/rawid-a1",
      { title = "y" })
    admin(server, "POST", "/admin/events/999123/retry")
    admin(server, "GET", "/admin/restock-notifications?email=rawid%40x.io")
    helpers.request(server, "POST", "/restock-notifications/variants/rawid-c4",
      { json = { email = "ann@example.com" } })
    helpers.request(server, "GET",
      "/restock-notifications/unsubscribe?token=rawid-t5")
    helpers.request(server, "GET", "/rawid-d6/elsewhere")
    helpers.request(server, "GET", "/admin/variants/rawid-e7") -- 401
    helpers.request(server, "DELETE", "/health")               -- 405
    helpers.request(server, "GET", "/admin/variants/%zzrawid") -- bad escape
    helpers.request(server, "GET", '/x"y\\z')

    local m = scrape(server)
    assert.falsy(m.body:find("rawid", 1, true),
      "a raw path segment leaked into the metrics:\n" .. m.body)
    assert.falsy(m.body:find("999123", 1, true),
      "a raw event id leaked into the metrics:\n" .. m.body)
    for _, name in ipairs({ REQUESTS, DURATION .. "_bucket",
        DURATION .. "_sum", DURATION .. "_count" }) do
      for _, s in ipairs(m:select(name)) do
        assert.truthy(PATTERNS[s.labels.route],
          "a route label that is not a pattern: " .. s.line)
      end
    end
    assert.truthy(req_count(m, "/admin/variants/{id}", 404) >= 1)
    assert.equals(1, req_count(m, "/admin/events/{id}/retry", 404))
    assert.equals(1, req_count(m,
      "/admin/products/{product_id}/variants/{id}", 200))
    assert.equals(1, req_count(m, "/admin/restock-notifications", 200))
    assert.equals(1, req_count(m,
      "/restock-notifications/variants/{variant_id}", 404))
    assert.equals(1, req_count(m, "/restock-notifications/unsubscribe", 400))
  end)

  it("keeps every histogram cumulative, with +Inf equal to _count",
    function()
      local server = helpers.start { plugin = [[
local restock = require "restock"
restock.subscribe("restock-notification.subscribed", function()
  restock.sleep(30)
end, { name = "slowish" })
restock.subscribe("restock-notification.subscribed", function() end,
  { name = "quick" })
]] }
      variants(server, { { id = "v", inventory_quantity = 0 } })
      for i = 1, 5 do
        subscribe(server, "v", "u" .. i .. "@example.com")
        helpers.request(server, "GET", "/health")
      end
      local m = wait_metrics(server, function(s)
        return s:count(HANDLER_DURATION .. "_count",
          { handler = "slowish" }) == 5
          and s:count(HANDLER_DURATION .. "_count", { handler = "quick" }) == 5
      end, 5, "5 runs of each handler")
      local ok, err = m:check_histograms()
      assert(ok, tostring(err) .. "\n" .. m.body)

      -- Each histogram has the same bucket bounds for every label set,
      -- and a run of restock.sleep(30) is not counted under 25 ms.
      local slow = m:select(HANDLER_DURATION .. "_bucket",
        { handler = "slowish" })
      local quick = m:select(HANDLER_DURATION .. "_bucket",
        { handler = "quick" })
      assert.equals(#slow, #quick)
      assert.truthy(#slow >= 2, "a histogram with no finite buckets")
      for i, b in ipairs(slow) do
        assert.equals(b.labels.le, quick[i].labels.le)
        local le = tonumber(b.labels.le)
        if le and le < 0.025 then
          assert.equals(0, b.value, "a 30 ms run counted under le="
            .. b.labels.le .. ":\n" .. m.body)
        end
      end
      local sum = m:value(HANDLER_DURATION .. "_sum", { handler = "slowish" })
      assert.truthy(sum >= 5 * 0.025 and sum < 5 * 2,
        "slowish _sum " .. sum .. " for five 30 ms runs")
      -- The /health requests: 5 of them, each well under a second.
      assert.equals(5, m:value(DURATION .. "_count", { route = "/health" }))
      assert.equals(5, m:value(DURATION .. "_bucket",
        { route = "/health", le = "1" }))
      assert.truthy(m:value(DURATION .. "_sum", { route = "/health" }) < 5)
    end)

  it("counts events emitted, delivered, failed and dead, and handler runs",
    function()
      local server = helpers.start { plugin = [[
local restock = require "restock"
restock.subscribe("restock-notification.restocked", function() end,
  { name = "good" })
restock.subscribe("restock-notification.restocked", function()
  error("bad always fails")
end, { name = "bad", max_attempts = 1 })
restock.subscribe("restock-notification.restocked", function()
  return nil, "flaky fails too"
end, { name = "flaky", max_attempts = 2 })
]] }
      variants(server, { { id = "v", inventory_quantity = 0 },
        { id = "w", inventory_quantity = 0 } })
      local before = scrape(server)

      subscribe(server, "v", "ann@example.com")
      subscribe(server, "v", "bob@example.com")
      subscribe(server, "w", "cy@example.com")
      helpers.assert_status(admin(server, "POST", "/admin/variants/v",
        { inventory_quantity = 3 }), 200)

      -- flaky fails once, waits out its 1 s backoff and then dies.
      local after = wait_metrics(server, function(s)
        return s:count("restockd_events_dead_total", { event = RESTOCKED })
          - before:count("restockd_events_dead_total",
            { event = RESTOCKED }) >= 2
      end, 6, "two dead deliveries")

      local function delta(name, labels)
        return after:count(name, labels) - before:count(name, labels)
      end
      assert.equals(3, delta("restockd_events_emitted_total",
        { event = SUBSCRIBED }))
      assert.equals(1, delta("restockd_events_emitted_total",
        { event = RESTOCKED }))
      assert.equals(1, delta("restockd_events_emitted_total",
        { event = UPDATED }))
      assert.equals(1, delta("restockd_events_delivered_total",
        { event = RESTOCKED }))
      assert.equals(1, delta("restockd_events_failed_total",
        { event = RESTOCKED }))
      assert.equals(2, delta("restockd_events_dead_total",
        { event = RESTOCKED }))
      -- Events without handlers are delivered to nobody and fail nowhere.
      assert.equals(0, delta("restockd_events_delivered_total",
        { event = SUBSCRIBED }))
      assert.equals(0, delta("restockd_events_dead_total",
        { event = SUBSCRIBED }))
      -- One run of good and bad, two of flaky.
      assert.equals(1, delta(HANDLER_DURATION .. "_count", { handler = "good" }))
      assert.equals(1, delta(HANDLER_DURATION .. "_count", { handler = "bad" }))
      assert.equals(2, delta(HANDLER_DURATION .. "_count",
        { handler = "flaky" }))
      local ok, err = after:check_histograms()
      assert(ok, err)

      -- The gauges agree with the admin API: one active subscription (w)
      -- left, nothing pending.
      local list = admin(server, "GET", "/admin/restock-notifications")
      helpers.assert_status(list, 200)
      assert.equals(1, list.json.count)
      assert.equals(list.json.count,
        after:value("restockd_active_subscriptions"))
      assert.equals(0, after:value("restockd_pending_deliveries"))
      assert.equals(0, after:value("restockd_pending_checks"))
      -- The admin events agree with the counters.
      local dead = helpers.events(server, { name = RESTOCKED, status = "dead" })
      assert.equals(1, dead.count)
    end)

  it("counts an event as emitted only once it is stored", function()
    local server = helpers.start()
    variants(server, { { id = "a", inventory_quantity = 0 },
      { id = "b", inventory_quantity = 0 } })
    local before = scrape(server)
    local stored = helpers.events(server, { name = UPDATED }).count

    -- All or nothing: entry 0 is fine, entry 1 names no variant, so the
    -- batch is rolled back and its events never exist.
    local res = admin(server, "POST", "/admin/inventory/batch", { updates = {
      { variant_id = "a", inventory_quantity = 5 },
      { variant_id = "missing", inventory_quantity = 1 } } })
    helpers.assert_error(res, 400, "invalid_data")
    assert.equals(stored, helpers.events(server, { name = UPDATED }).count)
    local after = scrape(server)
    assert.equals(0, after:count("restockd_events_emitted_total",
        { event = UPDATED })
      - before:count("restockd_events_emitted_total", { event = UPDATED }),
      "a rolled-back batch was counted as emitted events:\n" .. after.body)

    -- A good batch of two counts two.
    helpers.assert_status(admin(server, "POST", "/admin/inventory/batch",
      { updates = { { variant_id = "a", inventory_quantity = 5 },
        { variant_id = "b", inventory_quantity = 7 } } }), 200)
    local final = scrape(server)
    local events = helpers.events(server, { name = UPDATED }).count
    assert.equals(stored + 2, events)
    assert.equals(2, final:count("restockd_events_emitted_total",
        { event = UPDATED })
      - after:count("restockd_events_emitted_total", { event = UPDATED }))
  end)

  it("reports active subscriptions, pending checks and pending deliveries",
    function()
      local server = helpers.start { plugin = [[
local restock = require "restock"
restock.options { trigger_delay = 60000 }
restock.subscribe("restock-notification.subscribed", function()
  error("the confirmation mailer is down")
end, { name = "confirm", max_attempts = 5 })
]] }
      variants(server, { { id = "a", inventory_quantity = 0 },
        { id = "b", inventory_quantity = 0 },
        { id = "c", inventory_quantity = 0 } })
      local m = scrape(server)
      assert.equals(0, m:value("restockd_active_subscriptions"))

      subscribe(server, "a", "ann@example.com")
      subscribe(server, "a", "bob@example.com")
      subscribe(server, "b", "ann@example.com")
      subscribe(server, "a", "ann@example.com") -- a duplicate, not stored
      local list = admin(server, "GET", "/admin/restock-notifications")
      helpers.assert_status(list, 200)
      assert.equals(3, list.json.count)

      -- Each subscription's confirmation fails and waits for its retry.
      m = wait_metrics(server, function(s)
        return s:count("restockd_events_failed_total",
          { event = SUBSCRIBED }) >= 3
      end, 5, "three failed confirmations")
      assert.equals(list.json.count, m:value("restockd_active_subscriptions"))
      assert.equals(3, m:value("restockd_pending_deliveries"))
      assert.equals(0, m:value("restockd_pending_checks"))

      -- Two restocks within the minute's delay: two checks wait.
      helpers.assert_status(admin(server, "POST", "/admin/variants/a",
        { inventory_quantity = 5 }), 200)
      helpers.assert_status(admin(server, "POST", "/admin/inventory/batch",
        { updates = { { variant_id = "b", inventory_quantity = 2 },
          { variant_id = "a", inventory_quantity = 6 } } }), 200)
      m = scrape(server)
      assert.equals(2, m:value("restockd_pending_checks"))
      assert.equals(3, m:value("restockd_active_subscriptions"))

      -- Forgetting a person shrinks the gauge at once.
      helpers.assert_status(admin(server, "DELETE",
        "/admin/restock-notifications?email=ann%40example.com"), 200)
      m = scrape(server)
      list = admin(server, "GET", "/admin/restock-notifications")
      assert.equals(1, list.json.count)
      assert.equals(1, m:value("restockd_active_subscriptions"))
    end)

  it("counts the emails put in restocked events, however they are split",
    function()
      -- Batches of two: five shoppers of one variant make three events.
      local server = helpers.start { plugin = [[
local restock = require "restock"
restock.options { batch_size = 2 }
restock.subscribe("restock-notification.restocked", function() end)
]] }
      local m = scrape(server)
      assert.equals(0, m:value("restockd_emails_notified_total"),
        "no restockd_emails_notified_total on a fresh server:\n" .. m.body)
      variants(server, { { id = "v", inventory_quantity = 0 },
        { id = "w", inventory_quantity = 0 } })
      for i = 1, 5 do
        subscribe(server, "v", "v" .. i .. "@example.com")
      end
      subscribe(server, "w", "w1@example.com")
      -- Subscribing notifies nobody.
      assert.equals(0, scrape(server):value("restockd_emails_notified_total"))

      helpers.assert_status(admin(server, "POST", "/admin/variants/v",
        { inventory_quantity = 1 }), 200)
      m = wait_metrics(server, function(s)
        return s:count("restockd_events_emitted_total",
          { event = RESTOCKED }) >= 3
      end, 5, "three restocked events")
      -- Five emails in three events (2 + 2 + 1), and w's shopper waits.
      assert.equals(5, m:value("restockd_emails_notified_total"))
      assert.equals(3, m:count("restockd_events_emitted_total",
        { event = RESTOCKED }))
      assert.equals(1, m:value("restockd_active_subscriptions"))

      helpers.assert_status(admin(server, "POST", "/admin/variants/w",
        { inventory_quantity = 3 }), 200)
      m = wait_metrics(server, function(s)
        return s:count("restockd_events_emitted_total",
          { event = RESTOCKED }) >= 4
      end, 5, "a fourth restocked event")
      assert.equals(6, m:value("restockd_emails_notified_total"))

      -- The counter agrees with the events themselves.
      local listed = 0
      for _, e in ipairs(helpers.events(server, { name = RESTOCKED }).events) do
        listed = listed + #e.data.emails
      end
      assert.equals(listed, m:value("restockd_emails_notified_total"))
      -- Restocking again, with nobody waiting, adds nothing.
      helpers.assert_status(admin(server, "POST", "/admin/variants/v",
        { inventory_quantity = 0 }), 200)
      helpers.assert_status(admin(server, "POST", "/admin/variants/v",
        { inventory_quantity = 9 }), 200)
      assert.equals(6, scrape(server):value("restockd_emails_notified_total"))
    end)

  it("gives the version as a build-info metric", function()
    local server = helpers.start()
    local _, version = helpers.run({ "--version" })
    version = version:match("^restockd (%S+)")
    assert.truthy(version)
    local m = scrape(server)
    local info = m:select("restockd_build_info")
    assert.equals(1, #info, "want one restockd_build_info sample:\n" .. m.body)
    assert.same({ version = version }, info[1].labels)
    assert.equals(1, info[1].value)
  end)

  it("counts open file descriptors as connections come and go", function()
    local server = helpers.start()
    local before = scrape(server):value("process_open_fds")
    local conns = {}
    for i = 1, 6 do
      conns[i] = helpers.connect(server)
      helpers.assert_status(conns[i]:request("GET", "/health"), 200)
    end
    local during = scrape(server):value("process_open_fds")
    assert.truthy(during >= before + 6, string.format(
      "process_open_fds %d with 6 more connections open than at %d",
      during, before))
    for _, c in ipairs(conns) do
      c:close()
    end
    local after = wait_metrics(server, function(s)
      return s:value("process_open_fds") <= before
    end, 5, "process_open_fds to fall back")
    assert.truthy(after:value("process_open_fds") >= 3)
  end)

  it("counts what the HTTP layer refuses itself, and names the route of a 401",
    function()
      local server = helpers.start()
      local before = scrape(server)
      -- Garbage: 400 and a closed connection, without reaching a route.
      local conn = helpers.connect(server)
      conn:send_raw("\0\1\2 GARBAGE\r\n\r\n")
      helpers.assert_status(conn:read_response(), 400)
      conn:close()
      -- An admin route without the token: 401, labelled with its pattern.
      helpers.assert_status(helpers.request(server, "GET",
        "/admin/variants/some-id"), 401)
      local after = scrape(server)
      local function moved(labels)
        return (after:value(REQUESTS, labels) or 0)
          - (before:value(REQUESTS, labels) or 0)
      end
      assert.equals(1, moved { route = "malformed", status = "400" })
      assert.equals(1, moved { route = "/admin/variants/{id}", status = "401" })
    end)
end)
