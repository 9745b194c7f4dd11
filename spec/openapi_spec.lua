-- docs/openapi.yaml against the router: every route of core/api.c's routes[]
-- is documented with the same method and path template, every documented
-- operation is routed, the document hangs together ($refs resolve, path
-- parameters are declared, /admin needs bearerAuth), and the live server
-- answers each documented operation with a status the document lists (and
-- the CORS, metrics and rate-limit headers it promises).
--
-- OPTIONS (the CORS preflight) is checked against the live server. While
-- routes[] has no OPTIONS route and the server answers OPTIONS with 405 or
-- an unknown-route 404, those tests are pending rather than failing.
--
-- No YAML library is assumed: the document is read line by line with Lua
-- patterns. It must keep the usual layout: the top-level `paths:` key, path
-- keys indented two spaces, their method keys four, an operation's fields
-- six, and response codes eight.
local helpers = require "spec.support.helpers"

local DOC_PATH = "docs/openapi.yaml"
local ROUTES_PATH = "core/api.c"

-- The storefront origin the CORS tests send, listed in store_cors.
local ORIGIN = "https://shop.example"
local CORS_PLUGIN = string.format(
  'local restock = require "restock"\nrestock.options { store_cors = %q }\n',
  ORIGIN .. ", https://www.shop.example")

local HTTP_METHODS = {
  get = true, put = true, post = true, delete = true, options = true,
  head = true, patch = true, trace = true,
}

-- The admin paths anyone may fetch (core/api.c, console_public): the
-- console's files and its login.
local CONSOLE_PUBLIC = {
  ["GET /admin/"] = true, ["GET /admin/console.js"] = true,
  ["GET /admin/console.css"] = true, ["POST /admin/login"] = true,
}

local function read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. path)
  local s = f:read("a")
  f:close()
  return s
end

-- The route table ---------------------------------------------------------

-- Parses core/api.c's `routes[]`: a list of {method=, pattern=} in table
-- order. Each entry is a brace pair {"METHOD", "/pattern", handler}, maybe
-- wrapped over several lines; comments are ignored. An entry that does not
-- have that shape raises, so that a new notation is not silently skipped.
local function parse_routes(src)
  local body = src:match("Route%s+routes%s*%[%s*%]%s*=%s*(%b{})")
  assert(body, "no `static const Route routes[] = {...}` in " .. ROUTES_PATH)
  body = body:sub(2, -2):gsub("/%*.-%*/", " "):gsub("//[^\n]*", " ")
  local routes = {}
  for entry in body:gmatch("%b{}") do
    local method, pattern = entry:match(
      '^{%s*"(%u+)"%s*,%s*"([^"]*)"%s*,%s*[%w_]+%s*}$')
    assert(method, "cannot read the routes[] entry " .. entry)
    routes[#routes + 1] = { method = method, pattern = pattern }
  end
  return routes
end

-- The document --------------------------------------------------------------

local function indent_of(line)
  return #line:match("^( *)")
end

local function unquote(s)
  return (s:gsub("^'(.*)'$", "%1"):gsub('^"(.*)"$', "%1"))
end

-- Reads what the specs need from the OpenAPI document:
--   top         top-level key -> the rest of its line
--   info        info's keys -> the rest of their line
--   servers     the server urls
--   paths       path template -> {ops = {method -> op}, params = {...}}
--   path_order  the path templates in document order
--   components  type -> name -> {lines = {...}, name =, ["in"] =}
--   refs        every `$ref: '#/components/TYPE/NAME'` as {kind, name, line}
-- An op is {method =, responses = {code -> true}, params = {...},
-- security = nil (not given) or a list of {key = scheme name}, body =
-- bool}; a parameter is {name =, ["in"] =} or {ref =}.
local function parse_openapi(text)
  local doc = { top = {}, info = {}, servers = {}, paths = {},
    path_order = {}, components = {}, refs = {} }
  local section, path, op, ctype, centry
  local block_indent -- lines deeper than this belong to a block scalar
  local list         -- {indent =, items =} for parameters/security
  local responses_indent
  local n = 0
  for line in (text:gsub("\r", "") .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    local ind = indent_of(line)
    local content = line:sub(ind + 1)
    if content == "" or content:match("^#") then
      goto continue
    end
    if block_indent then
      if ind > block_indent then
        if centry then
          centry.lines[#centry.lines + 1] = line
        end
        goto continue
      end
      block_indent = nil
    end
    for kind, name in content:gmatch(
        "%$ref:%s*['\"]?#/components/([%w_]+)/([%w_.%-]+)") do
      doc.refs[#doc.refs + 1] = { kind = kind, name = name, line = n }
    end
    local item = content:match("^%-%s+(.*)$")
    if content:match(":%s*[|>][-+]?%d*$") then
      block_indent = item and ind + 2 or ind
    end

    -- A `parameters:` or `security:` list: items start with "- ".
    if list then
      if ind > list.indent or (ind == list.indent and item) then
        if item then
          local k, v = item:match("^([%w_$%-]+):%s*(.-)%s*$")
          local entry = {}
          if k == "$ref" then
            entry.ref = unquote(v)
          elseif k then
            entry[k] = unquote(v)
          end
          entry.key = k
          list.items[#list.items + 1] = entry
          list.item_indent = ind
        elseif #list.items > 0 and ind == list.item_indent + 2 then
          local k, v = content:match("^([%w_]+):%s*(.-)%s*$")
          if k then
            list.items[#list.items][k] = unquote(v)
          end
        end
        goto continue
      end
      list = nil
    end
    if responses_indent and ind <= responses_indent then
      responses_indent = nil
    end

    local key, rest = content:match("^([^%s:#][^:]*):%s*(.-)%s*$")
    if key then
      key = unquote(key)
    end
    if ind == 0 then
      section, path, op, ctype, centry = key, nil, nil, nil, nil
      if key then
        doc.top[key] = rest
      end
    elseif section == "info" and ind == 2 and key then
      doc.info[key] = unquote(rest)
    elseif section == "servers" and item then
      local url = item:match("^url:%s*(.-)%s*$")
      if url then
        doc.servers[#doc.servers + 1] = unquote(url)
      end
    elseif section == "paths" then
      if ind == 2 and key then
        path = { ops = {}, params = {}, template = key }
        op = nil
        assert(not doc.paths[key], "path " .. key .. " is given twice")
        doc.paths[key] = path
        doc.path_order[#doc.path_order + 1] = key
      elseif ind == 4 and key and path then
        op = nil
        if HTTP_METHODS[key] then
          assert(not path.ops[key], key .. " " .. path.template
            .. " is given twice")
          op = { method = key, responses = {}, params = {}, body = false,
            line = n }
          path.ops[key] = op
        elseif key == "parameters" then
          list = { indent = ind, items = path.params }
        end
      elseif ind == 6 and key and op then
        if key == "responses" then
          responses_indent = ind
        elseif key == "parameters" then
          list = { indent = ind, items = op.params }
        elseif key == "requestBody" then
          op.body = true
        elseif key == "security" then
          op.security = {}
          if rest == "" then
            list = { indent = ind, items = op.security }
          end
        end
      elseif ind == 8 and key and op and responses_indent then
        op.responses[key] = true
      end
    elseif section == "components" then
      if ind == 2 and key then
        doc.components[key] = doc.components[key] or {}
        ctype = key
        centry = nil
      elseif ind == 4 and key and ctype then
        centry = { name = key, lines = {} }
        doc.components[ctype][key] = centry
      elseif centry then
        centry.lines[#centry.lines + 1] = line
        if ind == 6 and key == "name" then
          centry.name = unquote(rest)
        elseif ind == 6 and key == "in" then
          centry["in"] = unquote(rest)
        end
      end
    end
    ::continue::
  end
  return doc
end

-- The documented operations as a sorted list of {method =, path =, op =}.
local function operations(doc)
  local ops = {}
  for _, template in ipairs(doc.path_order) do
    for method, op in pairs(doc.paths[template].ops) do
      ops[#ops + 1] = { method = method, path = template, op = op }
    end
  end
  table.sort(ops, function(a, b)
    if a.path ~= b.path then
      return a.path < b.path
    end
    return a.method < b.method
  end)
  return ops
end

-- The error types of the Error schema's `type` enum, as a set.
local function error_types(doc)
  local error_schema = doc.components.schemas
    and doc.components.schemas.Error
  assert(error_schema, "no components.schemas.Error")
  local types, in_enum, enum_indent = {}, false, nil
  for _, line in ipairs(error_schema.lines) do
    local ind = indent_of(line)
    local inline = line:match("^%s*enum:%s*%[(.-)%]")
    if inline then
      for v in inline:gmatch("[^,%s]+") do
        types[unquote(v)] = true
      end
    elseif line:match("^%s*enum:%s*$") then
      in_enum, enum_indent = true, ind
    elseif in_enum then
      local v = line:match("^%s*%-%s*(%S+)")
      if v and ind >= enum_indent then
        types[unquote(v)] = true
      else
        in_enum = false
      end
    end
  end
  return types
end

-- The header names a component (a response) lists under `headers:`, in
-- lower case.
local function component_headers(doc, kind, name)
  local c = doc.components[kind] and doc.components[kind][name]
  assert(c, "no components." .. kind .. "." .. name)
  local names, in_headers = {}, false
  for _, line in ipairs(c.lines) do
    local ind = indent_of(line)
    if ind == 6 then
      in_headers = line:match("^%s*headers:%s*$") ~= nil
    elseif in_headers and ind == 8 then
      local h = line:match("^%s*([%w%-]+):%s*$")
      if h then
        names[#names + 1] = h:lower()
      end
    end
  end
  return names
end

-- The names of the path parameters an operation declares (its own and its
-- path's, $refs resolved), as a set.
local function declared_path_params(doc, path, op)
  local names = {}
  local function add(list)
    for _, p in ipairs(list) do
      if p.ref then
        local name = p.ref:match("^#/components/parameters/(.+)$")
        local c = name and doc.components.parameters
          and doc.components.parameters[name]
        if c and c["in"] == "path" then
          names[c.name] = true
        end
      elseif p["in"] == "path" and p.name then
        names[p.name] = true
      end
    end
  end
  add(path.params)
  add(op.params)
  return names
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  return keys
end

-- Loaded when the file is, so that one test can be made per operation.
local DOC_TEXT = read_file(DOC_PATH)
local DOC = parse_openapi(DOC_TEXT)
local ROUTES = parse_routes(read_file(ROUTES_PATH))
local OPS = operations(DOC)

-- "GET /health" -> true, for the routes of the table.
local ROUTED = {}
for _, r in ipairs(ROUTES) do
  ROUTED[r.method .. " " .. r.pattern] = true
end

-- True when the route table has any OPTIONS route.
local function table_has_options()
  for _, r in ipairs(ROUTES) do
    if r.method == "OPTIONS" then
      return true
    end
  end
  return false
end

-- A concrete path for a template: every parameter becomes "x".
local function concrete(template)
  return (template:gsub("{[^}/]+}", "x"))
end

-- True when res is the router's answer for a route it does not know.
local function unknown_route(res)
  return res.status == 404 and type(res.json) == "table"
    and type(res.json.message) == "string"
    and res.json.message:sub(1, 6) == "Route "
end

describe("docs/openapi.yaml", function()
  describe("as a document", function()
    it("is OpenAPI 3.x with info, servers, paths and components", function()
      assert.truthy(DOC.top.openapi, "no top-level openapi key")
      assert.truthy(unquote(DOC.top.openapi):match("^3%.%d+%.%d+$"),
        "openapi is " .. tostring(DOC.top.openapi))
      assert.equals("restockd", DOC.info.title)
      assert.equals("0.1.0", DOC.info.version)
      assert.truthy(DOC.info.description, "info has no description")
      assert.same({ "http://127.0.0.1:9000" }, DOC.servers)
      assert.truthy(#DOC.path_order > 0, "no paths")
      assert.truthy(DOC.components.schemas, "no components.schemas")
    end)

    it("defines Error with type and message and every error type", function()
      local lines = table.concat(DOC.components.schemas.Error.lines, "\n")
      assert.truthy(lines:find("required: %[type, message%]")
        or lines:find("required:%s*\n%s*%- type%s*\n%s*%- message"),
        "Error must require type and message")
      assert.same({
        "invalid_data", "not_allowed", "not_found", "payload_too_large",
        "too_many_requests", "unauthorized", "unexpected_state",
      }, sorted_keys(error_types(DOC)))
    end)

    it("defines the schemas and responses the API is described with",
      function()
        for _, name in ipairs({ "Error", "Variant", "VariantInput",
          "RestockNotification", "Event", "Delivery", "StockLocation",
          "SalesChannel", "InventoryLevel", "PublishableApiKey",
          "BatchUpdate" }) do
          assert.truthy(DOC.components.schemas[name],
            "no components.schemas." .. name)
        end
        for _, name in ipairs({ "BadRequest", "Unauthorized", "NotFound",
          "PayloadTooLarge", "TooManyRequests" }) do
          assert.truthy(DOC.components.responses
            and DOC.components.responses[name],
            "no components.responses." .. name)
        end
        local tmr = table.concat(DOC.components.responses.TooManyRequests
          .lines, "\n")
        assert.truthy(tmr:find("\n%s*Retry%-After:"),
          "TooManyRequests has no Retry-After header")
        local scheme = DOC.components.securitySchemes
          and DOC.components.securitySchemes.bearerAuth
        assert.truthy(scheme, "no components.securitySchemes.bearerAuth")
        local text = table.concat(scheme.lines, "\n")
        assert.truthy(text:find("type: http", 1, true), text)
        assert.truthy(text:find("scheme: bearer", 1, true), text)
      end)

    it("points every $ref at a defined component", function()
      assert.truthy(#DOC.refs > 0, "no $ref found")
      local missing = {}
      for _, ref in ipairs(DOC.refs) do
        local defined = DOC.components[ref.kind]
          and DOC.components[ref.kind][ref.name]
        if not defined then
          missing[#missing + 1] = string.format("line %d: #/components/%s/%s",
            ref.line, ref.kind, ref.name)
        end
      end
      assert.same({}, missing)
    end)

    it("declares exactly the path parameters of each path template",
      function()
        local wrong = {}
        for _, o in ipairs(OPS) do
          local want = {}
          for name in o.path:gmatch("{([^}/]+)}") do
            want[name] = true
          end
          local have = declared_path_params(DOC, DOC.paths[o.path], o.op)
          local a, b = sorted_keys(want), sorted_keys(have)
          if table.concat(a, ",") ~= table.concat(b, ",") then
            wrong[#wrong + 1] = string.format("%s %s: template {%s}, "
              .. "declared {%s}", o.method, o.path, table.concat(a, ","),
              table.concat(b, ","))
          end
        end
        assert.same({}, wrong)
      end)

    it("requires bearerAuth on every /admin operation and on no other",
      function()
        local wrong = {}
        for _, o in ipairs(OPS) do
          local schemes = {}
          for _, s in ipairs(o.op.security or {}) do
            schemes[s.key or ""] = true
          end
          local admin = o.path:match("^/admin/") ~= nil
          -- The console's files and its login are public: `security: []`.
          local public = o.op.security and #o.op.security == 0
          if admin and public and CONSOLE_PUBLIC[o.method:upper() .. " "
              .. o.path] then
            admin = false
          end
          if admin ~= (schemes.bearerAuth == true) then
            wrong[#wrong + 1] = o.method .. " " .. o.path
          end
        end
        assert.same({}, wrong)
      end)

    it("gives every operation a success answer, and each /admin one a 401",
      function()
        local wrong = {}
        for _, o in ipairs(OPS) do
          local success = false
          for code in pairs(o.op.responses) do
            if code:match("^2%d%d$") then
              success = true
            end
          end
          if not success then
            wrong[#wrong + 1] = o.method .. " " .. o.path .. ": no 2xx"
          end
          local public = CONSOLE_PUBLIC[o.method:upper() .. " " .. o.path]
          if o.path:match("^/admin/") and not public
              and not o.op.responses["401"] then
            wrong[#wrong + 1] = o.method .. " " .. o.path .. ": no 401"
          end
          if o.op.body and not o.op.responses["413"] then
            wrong[#wrong + 1] = o.method .. " " .. o.path
              .. ": a body but no 413"
          end
        end
        assert.same({}, wrong)
      end)
  end)

  describe("and core/api.c routes[]", function()
    it("reads the route table", function()
      assert.truthy(#ROUTES >= 10, "only " .. #ROUTES .. " routes read")
      assert.truthy(ROUTED["GET /health"], "GET /health not read")
    end)

    it("documents every route with its method and path template", function()
      local missing = {}
      for _, r in ipairs(ROUTES) do
        local path = DOC.paths[r.pattern]
        if not (path and path.ops[r.method:lower()]) then
          missing[#missing + 1] = r.method .. " " .. r.pattern
        end
      end
      assert.same({}, missing)
    end)

    it("routes every documented operation (OPTIONS too, once routes[] has "
      .. "any)", function()
        local extra = {}
        local options_routed = table_has_options()
        for _, o in ipairs(OPS) do
          local name = o.method:upper() .. " " .. o.path
          if not ROUTED[name]
              and (o.method ~= "options" or options_routed) then
            extra[#extra + 1] = name
          end
        end
        assert.same({}, extra)
      end)
  end)

  describe("against the live server", function()
    after_each(helpers.cleanup)

    local types = error_types(DOC)

    -- Checks an error answer's body against the Error schema.
    local function assert_error_shape(res, name)
      local d = name .. " answered " .. helpers.describe(res)
      assert(type(res.json) == "table", "not a JSON error: " .. d)
      assert(types[res.json.type], "type not in Error's enum: " .. d)
      assert(type(res.json.message) == "string", "no message: " .. d)
    end

    for _, o in ipairs(OPS) do
      local METHOD = o.method:upper()
      local name = METHOD .. " " .. o.path
      if o.method ~= "options" then
        it(name .. " is routed and answers a documented status", function()
          local server = helpers.start()
          local res = helpers.admin(server, METHOD, concrete(o.path))
          assert(not unknown_route(res), name .. " is not routed: "
            .. helpers.describe(res))
          assert(res.status ~= 405, name .. " answered 405: "
            .. helpers.describe(res))
          assert(o.op.responses[tostring(res.status)], string.format(
            "%s answered %s, which the document does not list (it lists %s)",
            name, helpers.describe(res),
            table.concat(sorted_keys(o.op.responses), ", ")))
          if res.status >= 400 then
            assert_error_shape(res, name)
          end
          if o.path:match("^/admin/") and not CONSOLE_PUBLIC[name] then
            res = helpers.request(server, METHOD, concrete(o.path))
            helpers.assert_error(res, 401, "unauthorized")
            assert.equals("Bearer", res.headers["www-authenticate"])
          end
        end)
      else
        it(name .. " answers the CORS preflight with 204", function()
          local server = helpers.start({ plugin = CORS_PLUGIN })
          local res = helpers.request(server, "OPTIONS", concrete(o.path), {
            headers = {
              Origin = ORIGIN,
              ["Access-Control-Request-Method"] = "POST",
              ["Access-Control-Request-Headers"] = "content-type",
            },
          })
          if res.status ~= 204 and not table_has_options()
              and (res.status == 405 or unknown_route(res)) then
            pending("OPTIONS preflight is documented but not served yet "
              .. "(routes[] has no OPTIONS route; " .. name .. " answered "
              .. res.status .. ")")
            return
          end
          helpers.assert_status(res, 204)
          assert(o.op.responses["204"], name .. " documents no 204")
          -- Every header the document promises for an allowed origin.
          for _, h in ipairs(component_headers(DOC, "responses",
              "Preflight")) do
            assert(res.headers[h], name .. " answered without " .. h)
          end
          assert.equals(ORIGIN, res.headers["access-control-allow-origin"])
          local methods = res.headers["access-control-allow-methods"] or ""
          assert.truthy(methods:find("POST", 1, true),
            "Access-Control-Allow-Methods: " .. methods)
          local allowed = (res.headers["access-control-allow-headers"] or "")
            :lower()
          assert.truthy(allowed:find("content-type", 1, true),
            "Access-Control-Allow-Headers: " .. allowed)
          assert.truthy(allowed:find("x-publishable-api-key", 1, true),
            "Access-Control-Allow-Headers: " .. allowed)

          -- An origin store_cors does not list gets no allow header.
          res = helpers.request(server, "OPTIONS", concrete(o.path), {
            headers = { Origin = "https://evil.example",
              ["Access-Control-Request-Method"] = "POST" },
          })
          helpers.assert_status(res, 204)
          assert.is_nil(res.headers["access-control-allow-origin"])
        end)
      end
    end

    it("serves GET /metrics as Prometheus text", function()
      local server = helpers.start()
      local res = helpers.request(server, "GET", "/metrics")
      helpers.assert_status(res, 200)
      local ct = res.headers["content-type"] or ""
      assert.truthy(ct:find("text/plain", 1, true), ct)
      assert.truthy(ct:find("version=0.0.4", 1, true), ct)
      assert.truthy(res.body:find("# TYPE ", 1, true), res.body)
    end)

    it("echoes a listed Origin on a store answer, with Vary: Origin",
      function()
        local server = helpers.start({ plugin = CORS_PLUGIN })
        helpers.assert_status(helpers.admin(server, "POST", "/admin/variants",
          { id = "v1" }), 200)
        local res = helpers.request(server, "POST",
          "/restock-notifications/variants/v1", {
            headers = { Origin = ORIGIN },
            json = { email = "jane@example.com" },
          })
        helpers.assert_status(res, 201)
        assert.equals(ORIGIN, res.headers["access-control-allow-origin"])
        assert.equals("Origin", res.headers["vary"])
      end)

    it("answers a subscribe over subscribe_rate_limit with the documented "
      .. "429", function()
        local server = helpers.start({ plugin = 'local restock = require '
          .. '"restock"\nrestock.options { subscribe_rate_limit = 1 }\n' })
        local path = "/restock-notifications/variants/x"
        local op = DOC.paths["/restock-notifications/variants/{variant_id}"]
          .ops.post
        assert(op.responses["429"], "the subscribe route documents no 429")
        local first = helpers.request(server, "POST", path,
          { json = { email = "jane@example.com" } })
        helpers.assert_error(first, 404, "not_found")
        local res = helpers.request(server, "POST", path,
          { json = { email = "jane@example.com" } })
        helpers.assert_error(res, 429, "too_many_requests")
        for _, h in ipairs(component_headers(DOC, "responses",
            "TooManyRequests")) do
          assert(res.headers[h], "429 without " .. h)
        end
        assert.truthy(tostring(res.headers["retry-after"]):match("^%d+$"),
          "Retry-After: " .. tostring(res.headers["retry-after"]))
      end)
  end)
end)
