-- Runs spec/support/fake_shop.py, a fake WooCommerce REST API and Medusa
-- Admin API whose data the spec sets (and changes) with set_state.
--
--   local fake_shop = require "spec.support.fake_shop"
--   after_each(function() fake_http.cleanup(); helpers.cleanup() end)
--   local shop = fake_shop.start { medusa = { version = 2, ... } }
--   shop:set_state { ... }      -- the next request sees it
--   shop:requests()             -- each {path=, query=, headers=, status=}
local cjson = require "cjson"
local fake_http = require "spec.support.fake_http"

local M = {}

local function write_state(path, state)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(cjson.encode(state or {}))
  f:close()
  assert(os.rename(tmp, path))
end

-- Starts the fake with `state`; it is cleaned up by fake_http.cleanup().
function M.start(state)
  local dir = fake_http.tmpdir()
  local path = dir .. "/state.json"
  write_state(path, state)
  local shop = fake_http.start({ "--state", path },
    "spec/support/fake_shop.py")
  shop.state_path = path
  shop.set_state = function(self, new)
    write_state(self.state_path, new)
  end
  return shop
end

return M
