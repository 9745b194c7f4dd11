-- A busted output handler for spec/run.sh. It prints one line per finished
-- test as it ends, then every failure and error with its message and
-- traceback, and as its very last line "busted: N passed, N failed", which
-- spec/run.sh sums with the unit tests' own line. Errors count as failures
-- there, including those raised outside any test (in a setup, an after_each
-- or while loading a spec file), so that a broken harness cannot pass.
local pretty = require "pl.pretty"

return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.base"()

  local function out(s)
    io.write(s, "\n")
    io.flush()
  end

  -- A message may be a string, nil or any value given to error().
  local function message_text(message)
    if type(message) == "string" then
      return message
    elseif message == nil then
      return "Nil error"
    end
    return pretty.write(message)
  end

  -- The place a failure happened, as "file @ line", when busted knows it.
  local function where(t)
    local trace = t.element and t.element.trace
    if trace and trace.short_src then
      return trace.short_src .. " @ " .. tostring(trace.currentline)
    end
    return "(unknown place)"
  end

  local function describe_failure(t, kind)
    local lines = { kind .. " - " .. t.name, "  at " .. where(t) }
    lines[#lines + 1] = "  " .. message_text(t.message):gsub("\n", "\n  ")
    if t.trace and t.trace.traceback then
      lines[#lines + 1] = "  " .. t.trace.traceback:gsub("^\n", "")
        :gsub("\n", "\n  ")
    end
    return table.concat(lines, "\n")
  end

  -- The last test to end, so that an error in its after_each can name it.
  local last_test

  handler.testEnd = function(element, parent, status)
    local name = handler.getFullName(element)
    last_test = name
    if status == "success" then
      out("ok - " .. name)
    elseif status == "failure" then
      out("FAIL - " .. name)
    elseif status == "error" then
      out("ERROR - " .. name)
    elseif status == "pending" then
      out("PENDING - " .. name)
    end
    return nil, true
  end

  -- Errors outside an "it" (file, describe, setup, after_each, teardown) have
  -- no test end of their own, so they get their line here. The base handler
  -- has already recorded the error; an after_each error is renamed after
  -- the test it followed, since that is where the server misbehaved.
  handler.outsideError = function(element)
    if element.descriptor ~= "it" then
      local name = handler.getFullName(element)
      if element.descriptor == "after_each" and last_test then
        name = last_test .. " (after_each)"
        local recorded = handler.errors[#handler.errors]
        if recorded then
          recorded.name = name
        end
      end
      out("ERROR - " .. name)
    end
    return nil, true
  end

  handler.suiteEnd = function()
    local reports = {}
    for _, t in ipairs(handler.failures) do
      reports[#reports + 1] = describe_failure(t, "FAIL")
    end
    for _, t in ipairs(handler.errors) do
      reports[#reports + 1] = describe_failure(t, "ERROR")
    end
    if #reports > 0 then
      out("")
      out(table.concat(reports, "\n\n"))
    end
    out("")
    out(string.format("busted: %d passed, %d failed", handler.successesCount,
      handler.failuresCount + handler.errorsCount))
    return nil, true
  end

  busted.subscribe({ "test", "end" }, handler.testEnd,
    { predicate = handler.cancelOnPending })
  busted.subscribe({ "error" }, handler.outsideError)
  busted.subscribe({ "failure" }, handler.outsideError)
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)

  return handler
end
