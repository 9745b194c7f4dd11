-- scripts/ses.lua's Signature Version 4 (M.sign, in Lua on restock.crypto)
-- against the test vectors AWS publishes (spec/support/sigv4_vectors.lua):
-- for each request, the canonical request, the string to sign and the
-- Authorization header must be exactly the suite's. The signing runs in
-- the real binary: `restockd check` loads a plugin that signs every vector
-- and writes what it got.
local cjson = require "cjson"
local helpers = require "spec.support.helpers"
local vectors = require "spec.support.sigv4_vectors"
local outbound = require "spec.support.outbound"

describe("scripts/ses.lua Signature Version 4", function()
  local results

  setup(function()
    local dir = helpers.tmpdir()
    local out = dir .. "/signed.json"
    local plugin = dir .. "/plugin.lua"
    helpers.write_file(plugin, string.format([[
local restock = require "restock"
local ses = require "ses"
local vectors = %s
local out = {}
for _, v in ipairs(vectors) do
  local authz, parts = ses.sign {
    method = v.method, path = v.path, query = v.query, headers = v.headers,
    body = v.body, region = "us-east-1", service = "service",
    access_key = "AKIDEXAMPLE",
    secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    amz_date = v.headers["X-Amz-Date"],
  }
  out[v.name] = { authz = authz, creq = parts.canonical_request,
    sts = parts.string_to_sign }
end
local f = assert(io.open(%q, "w"))
f:write(restock.json.encode(out))
f:close()
]], outbound.literal(vectors), out))
    local rc, _, stderr = helpers.run({ "check", "--config", plugin })
    assert(rc == 0, "restockd check exited " .. rc .. ":\n" .. stderr)
    local text = helpers.read_file(out)
    assert(text, "the plugin wrote no results:\n" .. stderr)
    results = cjson.decode(text)
  end)

  teardown(function()
    helpers.cleanup()
  end)

  for _, v in ipairs(vectors) do
    it("signs " .. v.name .. " as the suite does", function()
      local got = results[v.name]
      assert.is_table(got)
      assert.equals(v.creq, got.creq)
      assert.equals(v.sts, got.sts)
      assert.equals(v.authz, got.authz)
    end)
  end
end)
