-- restock_mail.lua: what every shipped sender shares (smtp.lua, mailgun.lua,
-- postmark.lua, ses.lua, sendgrid.lua): templates per locale, the links a
-- mail carries (unsubscribe, manage, confirm, the product), the headers of
-- one-click unsubscribe (RFC 8058), and the two subscriptions a sender
-- makes. docs/senders.md describes every option.
--
-- Templates are files: NAME.LOCALE.subject, NAME.LOCALE.txt and
-- NAME.LOCALE.html, NAME being "restocked" or "confirmation", in the shop's
-- folder (`templates`, or RESTOCK_TEMPLATES), else in the defaults shipped
-- beside this script (templates/, in English). A locale is used when its
-- .subject and at least one body exist. They are read when plugin.lua
-- loads (and again on SIGHUP), never while mails go out.
--
-- Placeholders: {{variant.title}} and the other names of M.PLACEHOLDERS;
-- {{#name}}...{{/name}} shows its inside only when the value is not empty,
-- {{^name}}...{{/name}} only when it is. Values are HTML-escaped in .html
-- files and left as they are in .txt and .subject. An unknown name, or a
-- section left open, stops plugin.lua from loading with the file named.

local restock = require "restock"

local M = {}

M.RESTOCKED = "restock-notification.restocked"
M.CONFIRMATION = "restock-notification.confirmation_requested"

-- What a template may name.
M.PLACEHOLDERS = {
  ["variant.id"] = true, ["variant.title"] = true, ["variant.sku"] = true,
  ["variant.product_id"] = true, ["variant.name"] = true,
  ["variant.url"] = true, ["variant.quantity"] = true,
  ["shop.name"] = true, ["shop.url"] = true,
  email = true, locale = true, quantity = true,
  unsubscribe_url = true, manage_url = true, confirm_url = true,
}

-- The folder of the shipped templates: templates/ beside this file.
local function shipped_dir()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$")
  return (dir or ".") .. "/templates"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end

-- Parses a template into a list of nodes: strings, {name=} and
-- {section=, inverted=, nodes=}. Raises naming `where` for an unknown name
-- or an unbalanced section.
local function parse(text, where)
  local root = { nodes = {} }
  local stack = { root }
  local pos = 1
  while true do
    local s, e, tag = text:find("{{%s*([#^/]?[%w_.]+)%s*}}", pos)
    local top = stack[#stack]
    if not s then
      if pos <= #text then
        top.nodes[#top.nodes + 1] = text:sub(pos)
      end
      break
    end
    local kind, name = tag:sub(1, 1), tag
    if kind == "#" or kind == "^" or kind == "/" then
      name = tag:sub(2)
    else
      kind = ""
    end
    local before = text:sub(pos, s - 1)
    if kind ~= "" then
      -- A section tag alone on its line takes the line with it, as in
      -- Mustache, so that text templates keep no empty lines of tags.
      local line_start = before:match("^()[ \t]*$")
        or before:match("\n()[ \t]*$")
      local after = text:match("^[ \t]*\r?\n()", e + 1)
        or (text:match("^[ \t]*$", e + 1) and #text + 1)
      local at_start = line_start and (line_start > 1 or pos == 1
        or text:sub(pos - 1, pos - 1) == "\n")
      if at_start and after then
        before = before:sub(1, line_start - 1)
        e = after - 1
      end
    end
    if before ~= "" then
      top.nodes[#top.nodes + 1] = before
    end
    if not M.PLACEHOLDERS[name] then
      error(string.format("%s: unknown placeholder {{%s}}; the names are: %s",
        where, tag, table.concat((function()
          local names = {}
          for k in pairs(M.PLACEHOLDERS) do
            names[#names + 1] = k
          end
          table.sort(names)
          return names
        end)(), ", ")), 0)
    end
    if kind == "#" or kind == "^" then
      local node = { section = name, inverted = kind == "^", nodes = {} }
      top.nodes[#top.nodes + 1] = node
      stack[#stack + 1] = node
    elseif kind == "/" then
      if top.section ~= name then
        error(string.format("%s: {{/%s}} closes no open {{#%s}}", where, name,
          name), 0)
      end
      stack[#stack] = nil
    else
      top.nodes[#top.nodes + 1] = { name = name }
    end
    pos = e + 1
  end
  if #stack > 1 then
    error(string.format("%s: {{#%s}} is never closed", where,
      stack[#stack].section), 0)
  end
  return root.nodes
end

local HTML_ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
  ['"'] = "&quot;", ["'"] = "&#39;" }

function M.html_escape(s)
  return (tostring(s):gsub("[&<>\"']", HTML_ESCAPES))
end

local function render_nodes(nodes, values, html, out)
  for _, node in ipairs(nodes) do
    if type(node) == "string" then
      out[#out + 1] = node
    elseif node.section then
      local v = values[node.section]
      local shown = v ~= nil and v ~= "" and v ~= false
      if shown ~= node.inverted then
        render_nodes(node.nodes, values, html, out)
      end
    else
      local v = values[node.name]
      if v ~= nil then
        out[#out + 1] = html and M.html_escape(v) or tostring(v)
      end
    end
  end
  return out
end

-- Renders a parsed template with `values` (flat: ["variant.title"] = ...).
function M.render(nodes, values, html)
  return table.concat(render_nodes(nodes, values, html, {}))
end

-- Loads NAME.LOCALE.{subject,txt,html} for one locale from `dir`, or nil
-- if that locale has no subject or no body there.
local function load_locale(dir, name, locale)
  local base = string.format("%s/%s.%s.", dir, name, locale)
  local subject = read_file(base .. "subject")
  local text, html = read_file(base .. "txt"), read_file(base .. "html")
  if not subject or not (text or html) then
    return nil
  end
  return {
    locale = locale,
    subject = parse(subject, base .. "subject"),
    text = text and parse(text, base .. "txt"),
    html = html and parse(html, base .. "html"),
  }
end

-- The locales that `dir` holds templates for, from its file names.
local function list_locales(dir, name)
  local found, seen = {}, {}
  local p = io.popen("ls -1 -- '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  if not p then
    return found
  end
  for file in p:lines() do
    local n, locale = file:match("^([%w_-]+)%.([%w-]+)%.subject$")
    if n == name and not seen[locale] then
      seen[locale] = true
      found[#found + 1] = locale
    end
  end
  p:close()
  return found
end

-- Loads the templates `name` of every locale in the shop's folder and the
-- shipped ones: {[lower-case locale] = template}, shop's first.
local function load_templates(dirs, name, locales)
  local out = {}
  for _, dir in ipairs(dirs) do
    for _, locale in ipairs(locales or list_locales(dir, name)) do
      local key = locale:lower()
      if not out[key] then
        out[key] = load_locale(dir, name, locale)
      end
    end
  end
  return out
end

-- The template for `locale` ("pt-BR"): that locale, its language ("pt"),
-- the fallback locale, then English.
function M.template(config, name, locale)
  local set = config.templates[name]
  local tries = {}
  if type(locale) == "string" and locale ~= "" then
    tries[#tries + 1] = locale:lower()
    tries[#tries + 1] = locale:lower():match("^([^-]+)")
  end
  tries[#tries + 1] = config.locale:lower()
  tries[#tries + 1] = "en"
  for _, l in ipairs(tries) do
    if set[l] then
      return set[l]
    end
  end
  return nil
end

-- Fills a link template: "{token}" (or a "%s", as sendgrid.lua's
-- unsubscribe_url always took) becomes the URL-encoded token, and
-- "{variant_id}", "{product_id}", "{sku}" the variant's, for product links.
function M.link(template, token, variant)
  if not template or template == "" then
    return nil
  end
  if token == nil and (template:find("{token}", 1, true)
      or template:find("%s", 1, true)) then
    return nil
  end
  local enc = token and restock.url.encode(token)
  local s = template
  if enc then
    s = s:gsub("{token}", function() return enc end)
    if not template:find("{token}", 1, true) then
      s = s:gsub("%%s", function() return enc end, 1)
    end
  end
  variant = variant or {}
  s = s:gsub("{([%w_]+)}", function(key)
    local v = ({ variant_id = variant.id, product_id = variant.product_id,
      sku = variant.sku })[key]
    return v and restock.url.encode(v) or nil
  end)
  return s
end

local warned_no_token = false

-- The RFC 8058 headers for a mail whose subscription `token` names: the
-- unsubscribe URL (and a mailto: if configured) in List-Unsubscribe, and
-- List-Unsubscribe-Post when there is a URL to post to. Empty without a
-- token or a configured URL.
function M.unsubscribe_headers(config, token)
  local parts = {}
  local url = M.link(config.unsubscribe_url, token)
  if url then
    parts[#parts + 1] = "<" .. url .. ">"
  end
  if config.unsubscribe_mailto then
    local subject = "unsubscribe" .. (token and (" " .. token) or "")
    parts[#parts + 1] = "<mailto:" .. config.unsubscribe_mailto
      .. "?subject=" .. restock.url.encode(subject) .. ">"
  end
  local headers = {}
  if #parts > 0 then
    headers["List-Unsubscribe"] = table.concat(parts, ", ")
  end
  if url then
    headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
  end
  return headers, url
end

-- The values a template sees for one mail.
local function values(config, ctx)
  local v = ctx.variant or {}
  local name = v.title or v.sku or v.id
  return {
    ["variant.id"] = v.id, ["variant.title"] = v.title or name,
    ["variant.sku"] = v.sku, ["variant.product_id"] = v.product_id,
    ["variant.name"] = name, ["variant.quantity"] = v.quantity,
    ["variant.url"] = M.link(config.product_url, nil, v),
    ["shop.name"] = config.shop.name, ["shop.url"] = config.shop.url,
    email = ctx.email, locale = ctx.locale, quantity = ctx.quantity,
    unsubscribe_url = ctx.unsubscribe_url, manage_url = ctx.manage_url,
    confirm_url = ctx.confirm_url,
  }
end

-- Builds one mail: {from=, reply_to=, to=, subject=, text=, html=,
-- headers=, unsubscribe_url=, manage_url=, locale=}. `kind` is "restocked"
-- or "confirmation"; ctx has variant, email, locale, quantity and the
-- subscription's unsubscribe_token, manage_token and confirm_token.
function M.compose(config, kind, ctx)
  local tpl = M.template(config, kind, ctx.locale)
  if not tpl then
    return nil, string.format("no %s template for locale %s", kind,
      tostring(ctx.locale or config.locale))
  end
  local headers, unsubscribe_url = M.unsubscribe_headers(config,
    ctx.unsubscribe_token)
  if not headers["List-Unsubscribe"] and not warned_no_token then
    warned_no_token = true
    restock.log.warn("%s: a %s mail goes out without List-Unsubscribe: %s",
      config.name, kind, ctx.unsubscribe_token
        and "set public_url or unsubscribe_url (docs/senders.md)"
        or "the event carries no unsubscribe_token for this subscriber")
  end
  -- Automatic mail: vacation responders do not answer it (RFC 3834).
  headers["Auto-Submitted"] = "auto-generated"
  local v = values(config, {
    variant = ctx.variant, email = ctx.email, locale = ctx.locale,
    quantity = ctx.quantity, unsubscribe_url = unsubscribe_url,
    manage_url = M.link(config.manage_url, ctx.manage_token),
    confirm_url = M.link(config.confirm_url, ctx.confirm_token),
  })
  local subject = M.render(tpl.subject, v, false):gsub("[\r\n]+", " ")
    :gsub("^%s+", ""):gsub("%s+$", "")
  return {
    from = config.from, reply_to = config.reply_to, to = ctx.email,
    subject = subject,
    text = tpl.text and M.render(tpl.text, v, false),
    html = tpl.html and M.render(tpl.html, v, true),
    headers = headers, unsubscribe_url = unsubscribe_url,
    manage_url = v.manage_url, confirm_url = v.confirm_url,
    locale = tpl.locale,
  }
end

-- The settings every sender takes (docs/senders.md), from `options` and
-- the environment. `name` names the sender in logs and handler names.
function M.config(name, options)
  options = options or {}
  local public = options.public_url or os.getenv("RESTOCK_PUBLIC_URL")
  public = public and public:gsub("/+$", "")
  local function route(path)
    return public and (public .. path .. "?token={token}")
  end
  local from = options.from
  if from and options.from_name then
    from = string.format('"%s" <%s>',
      options.from_name:gsub('[\\"]', "\\%0"), from)
  end
  local config = {
    name = name,
    from = from,
    reply_to = options.reply_to,
    locale = options.locale or "en",
    shop = {
      name = options.shop_name or os.getenv("RESTOCK_SHOP_NAME"),
      url = options.shop_url or os.getenv("RESTOCK_SHOP_URL"),
    },
    public_url = public,
    unsubscribe_url = options.unsubscribe_url
      or route("/restock-notifications/unsubscribe"),
    manage_url = options.manage_url or route("/restock-notifications/mine"),
    confirm_url = options.confirm_url
      or route("/restock-notifications/confirm"),
    product_url = options.product_url,
    unsubscribe_mailto = options.unsubscribe_mailto,
    confirm = options.confirm ~= false,
    max_attempts = options.max_attempts,
    timeout = options.timeout or 15000,
  }
  local dirs = {}
  local shop_dir = options.templates or os.getenv("RESTOCK_TEMPLATES")
  if shop_dir then
    dirs[#dirs + 1] = shop_dir:gsub("/+$", "")
  end
  dirs[#dirs + 1] = shipped_dir()
  config.templates = {
    restocked = load_templates(dirs, "restocked", options.locales),
    confirmation = load_templates(dirs, "confirmation", options.locales),
  }
  for _, kind in ipairs({ "restocked", "confirmation" }) do
    if not M.template(config, kind, nil) then
      error(string.format("%s: no %s template for locale %s (nor en) in %s",
        name, kind, config.locale, table.concat(dirs, " or ")), 3)
    end
  end
  return config
end

-- Subscribes a sender: `send(mail)` sends one mail (M.compose's table) and
-- returns true and the provider's message id, or nil, err and optionally
-- {retry = false}. restocked mails go one delivery per subscriber
-- (each = "subscriber"); confirmation mails (double opt-in) unless
-- config.confirm is false.
function M.register(config, send)
  local function deliver(kind, ctx, what)
    local mail, err = M.compose(config, kind, ctx)
    if not mail then
      restock.log.error("%s: %s", config.name, err)
      return nil, err, { retry = false }
    end
    local ok, id_or_err, opts = send(mail)
    if ok then
      restock.log.info("%s: %s mail for %s to %s accepted, message id %s",
        config.name, kind, what, ctx.email, tostring(id_or_err))
      return true
    end
    if opts and opts.retry == false then
      restock.log.error("%s: %s mail for %s to %s refused for good: %s",
        config.name, kind, what, ctx.email, tostring(id_or_err))
    end
    return nil, id_or_err, opts
  end

  -- A variant that is gone cannot be mailed about; any other failure to
  -- read it (the database) is retried.
  local function variant_of(id)
    local variant, err = restock.variants.retrieve(id)
    if variant then
      return variant
    end
    if tostring(err):find("was not found", 1, true) then
      return nil, err, { retry = false }
    end
    return nil, err
  end

  restock.subscribe(M.RESTOCKED, function(data)
    local variant, err, opts = variant_of(data.variant_id)
    if not variant then
      return nil, err, opts
    end
    local sub = data.subscriber or { email = data.email }
    return deliver("restocked", {
      variant = variant, email = data.email, locale = sub.locale,
      quantity = sub.quantity, unsubscribe_token = sub.unsubscribe_token,
      manage_token = sub.manage_token,
    }, variant.id)
  end, { each = "subscriber", name = config.name .. "-restocked",
    max_attempts = config.max_attempts })

  if config.confirm then
    restock.subscribe(M.CONFIRMATION, function(data)
      if not config.confirm_url then
        return nil, config.name .. ": set public_url (or confirm_url) to "
          .. "send confirmation mails", { retry = false }
      end
      local variant, err, opts = variant_of(data.variant_id)
      if not variant then
        return nil, err, opts
      end
      return deliver("confirmation", {
        variant = variant, email = data.email, locale = data.locale,
        quantity = data.quantity, unsubscribe_token = data.unsubscribe_token,
        manage_token = data.manage_token, confirm_token = data.confirm_token,
      }, variant.id)
    end, { name = config.name .. "-confirmation",
      max_attempts = config.max_attempts })
  end
end

-- Splits a mail's from (and each address) into {email=, name=} for the
-- JSON APIs that want them apart. "Name <a@b>" or "a@b".
function M.address(s)
  if not s then
    return nil
  end
  local name, email = s:match('^%s*(.-)%s*<([^<>]+)>%s*$')
  if not email then
    return { email = s:match("^%s*(.-)%s*$") }
  end
  name = name:gsub('^"(.*)"$', "%1"):gsub('\\(.)', "%1")
  return { email = email, name = name ~= "" and name or nil }
end

-- A provider's error text, from a JSON body's usual fields or the body.
function M.error_text(res, ...)
  local body = restock.json.decode(res.body or "")
  if type(body) == "table" then
    for _, key in ipairs({ ... }) do
      if type(body[key]) == "string" and body[key] ~= "" then
        return body[key]
      end
    end
  end
  return (res.body or ""):sub(1, 300)
end

return M
