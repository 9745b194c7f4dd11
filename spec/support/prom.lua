-- Parses the Prometheus text exposition format (version 0.0.4) that
-- GET /metrics answers, strictly enough that a malformed line fails the
-- test that scraped it, and offers look-ups by metric name and labels.
--
--   local prom = require "spec.support.prom"
--   local m = prom.parse(res.body)        -- raises on a malformed line
--   m:value("restockd_http_requests_total", { route = "/health",
--     status = "200" })                    -- a number, or nil
--   m:sum("restockd_events_emitted_total") -- over every series of a name
--   m.types["restockd_pending_checks"]     -- "gauge"
--
-- A scrape is a table with
--   samples  array of {name=, labels={...}, value=, line=} in text order
--   series   key -> value, the key being name{k="v",...} with labels sorted
--   types    family name -> "counter" | "gauge" | "histogram" | ...
--   help     family name -> help text
--   order    family names in the order their TYPE lines came
--   type_line  family name -> the line number of its TYPE line
-- Each sample also has n, its line number.
local M = {}

local Scrape = {}
Scrape.__index = Scrape

-- Undoes the label value escapes (\\, \" and \n).
local function unescape(s)
  return (s:gsub("\\(.)", function(c)
    if c == "n" then
      return "\n"
    end
    return c
  end))
end

-- The canonical key of a series: name{a="1",b="2"} with sorted labels,
-- values escaped again; just the name when there are no labels.
function M.key(name, labels)
  local names = {}
  for k in pairs(labels or {}) do
    names[#names + 1] = k
  end
  if #names == 0 then
    return name
  end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do
    local v = tostring(labels[k]):gsub("\\", "\\\\"):gsub("\"", "\\\"")
      :gsub("\n", "\\n")
    parts[#parts + 1] = string.format('%s="%s"', k, v)
  end
  return name .. "{" .. table.concat(parts, ",") .. "}"
end

-- Parses the label block's inside (a="x",b="y"), returning a table, or
-- nil and a reason.
local function parse_labels(s)
  local labels = {}
  local i = 1
  while i <= #s do
    local name, after = s:match("^([%a_][%w_]*)=\"()", i)
    if not name then
      return nil, "bad label at " .. s:sub(i)
    end
    -- The value runs to the first quote not escaped by a backslash.
    local j = after
    local value_end
    while j <= #s do
      local c = s:sub(j, j)
      if c == "\\" then
        j = j + 2
      elseif c == "\"" then
        value_end = j
        break
      else
        j = j + 1
      end
    end
    if not value_end then
      return nil, "unterminated label value in " .. s
    end
    if labels[name] ~= nil then
      return nil, "label " .. name .. " given twice"
    end
    labels[name] = unescape(s:sub(after, value_end - 1))
    i = value_end + 1
    if s:sub(i, i) == "," then
      i = i + 1
    elseif i <= #s then
      return nil, "expected , after a label in " .. s
    end
  end
  return labels
end

-- A sample value: a number, +Inf, -Inf or NaN.
local function parse_value(s)
  if s == "+Inf" then
    return math.huge
  elseif s == "-Inf" then
    return -math.huge
  elseif s == "NaN" then
    return 0 / 0
  end
  if not s:match("^[-+]?[%d.]+[eE]?[-+]?%d*$") then
    return nil
  end
  return tonumber(s)
end

-- Parses the whole text; raises an error naming the first bad line.
function M.parse(text)
  assert(type(text) == "string", "no metrics text")
  local self = setmetatable({ samples = {}, series = {}, types = {},
    help = {}, order = {}, type_line = {} }, Scrape)
  if text ~= "" and text:sub(-1) ~= "\n" then
    error("the exposition does not end with a line feed", 2)
  end
  local n = 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    if line:match("^#") then
      local kind, name, rest = line:match("^# (%u+) ([%a_:][%w_:]*) ?(.*)$")
      if kind == "HELP" then
        if self.help[name] then
          error(string.format("line %d: a second HELP for %s", n, name), 2)
        end
        self.help[name] = rest
      elseif kind == "TYPE" then
        if self.types[name] then
          error(string.format("line %d: a second TYPE for %s", n, name), 2)
        end
        if not ({ counter = true, gauge = true, histogram = true,
            summary = true, untyped = true })[rest] then
          error(string.format("line %d: unknown type %q", n, rest), 2)
        end
        self.types[name] = rest
        self.type_line[name] = n
        self.order[#self.order + 1] = name
      end
      -- Other comments are allowed and ignored.
    elseif line ~= "" then
      local name, rest = line:match("^([%a_:][%w_:]*)(.*)$")
      if not name then
        error(string.format("line %d: not a sample: %q", n, line), 2)
      end
      local labels = {}
      if rest:sub(1, 1) == "{" then
        local close = rest:find("} ", 1, true)
        -- A label value may hold "} ": take the last one before the value.
        local last = close
        while last do
          close = last
          last = rest:find("} ", last + 1, true)
        end
        if not close then
          error(string.format("line %d: unterminated labels: %q", n, line), 2)
        end
        local err
        labels, err = parse_labels(rest:sub(2, close - 1))
        if not labels then
          error(string.format("line %d: %s: %q", n, err, line), 2)
        end
        rest = rest:sub(close + 1)
      end
      local vtext, ts = rest:match("^ (%S+)( ?%-?%d*)$")
      local value = vtext and parse_value(vtext)
      if value == nil then
        error(string.format("line %d: bad value: %q", n, line), 2)
      end
      local key = M.key(name, labels)
      if self.series[key] ~= nil then
        error(string.format("line %d: series %s given twice", n, key), 2)
      end
      self.series[key] = value
      self.samples[#self.samples + 1] = { name = name, labels = labels,
        value = value, line = line, n = n,
        timestamp = ts ~= "" and ts or nil }
    end
  end
  return self
end

-- The value of one series, or nil.
function Scrape:value(name, labels)
  return self.series[M.key(name, labels)]
end

-- The value of one series, 0 when it is absent (a counter not yet seen).
function Scrape:count(name, labels)
  return self:value(name, labels) or 0
end

-- The samples of one name, optionally only those whose labels include
-- every pair of `match`.
function Scrape:select(name, match)
  local out = {}
  for _, s in ipairs(self.samples) do
    if s.name == name then
      local ok = true
      for k, v in pairs(match or {}) do
        if s.labels[k] ~= v then
          ok = false
          break
        end
      end
      if ok then
        out[#out + 1] = s
      end
    end
  end
  return out
end

-- The sum over every series of a name (matching `match`, if given).
function Scrape:sum(name, match)
  local total = 0
  for _, s in ipairs(self:select(name, match)) do
    total = total + s.value
  end
  return total
end

-- The family a sample name belongs to: itself, or for a histogram's
-- _bucket/_sum/_count the histogram's name.
function Scrape:family_of(name)
  if self.types[name] then
    return name
  end
  for _, suffix in ipairs({ "_bucket", "_sum", "_count" }) do
    local base = name:sub(1, -#suffix - 1)
    if name:sub(-#suffix) == suffix and self.types[base] == "histogram" then
      return base
    end
  end
  return nil
end

-- Checks every histogram family: per label set, bucket bounds ascending,
-- counts cumulative, a +Inf bucket equal to _count, a _sum. Returns true,
-- or false and the first problem.
function Scrape:check_histograms()
  for family, kind in pairs(self.types) do
    if kind == "histogram" then
      -- Group the buckets by their labels without le.
      local groups, order = {}, {}
      for _, s in ipairs(self:select(family .. "_bucket")) do
        if s.labels.le == nil then
          return false, "a bucket without le: " .. s.line
        end
        local rest = {}
        for k, v in pairs(s.labels) do
          if k ~= "le" then
            rest[k] = v
          end
        end
        local key = M.key(family, rest)
        if not groups[key] then
          groups[key] = { labels = rest, buckets = {} }
          order[#order + 1] = key
        end
        local le = s.labels.le == "+Inf" and math.huge or tonumber(s.labels.le)
        if not le then
          return false, "a bad le: " .. s.line
        end
        table.insert(groups[key].buckets, { le = le, value = s.value,
          line = s.line })
      end
      for _, key in ipairs(order) do
        local g = groups[key]
        local prev_le, prev_v = -math.huge, 0
        for _, b in ipairs(g.buckets) do
          if b.le <= prev_le then
            return false, "bucket bounds not ascending at " .. b.line
          end
          if b.value < prev_v then
            return false, "buckets not cumulative at " .. b.line
          end
          if b.value ~= math.floor(b.value) then
            return false, "a fractional bucket count: " .. b.line
          end
          prev_le, prev_v = b.le, b.value
        end
        if prev_le ~= math.huge then
          return false, "no +Inf bucket for " .. key
        end
        local count = self:value(family .. "_count", g.labels)
        local sum = self:value(family .. "_sum", g.labels)
        if count == nil then
          return false, "no _count for " .. key
        end
        if sum == nil then
          return false, "no _sum for " .. key
        end
        if count ~= prev_v then
          return false, string.format("+Inf bucket %s but _count %s for %s",
            tostring(prev_v), tostring(count), key)
        end
        if sum < 0 then
          return false, "a negative _sum for " .. key
        end
      end
      -- Every _count and _sum must belong to a label set with buckets.
      for _, suffix in ipairs({ "_count", "_sum" }) do
        for _, s in ipairs(self:select(family .. suffix)) do
          if not groups[M.key(family, s.labels)] then
            return false, "a " .. suffix .. " without buckets: " .. s.line
          end
        end
      end
    end
  end
  return true
end

return M
