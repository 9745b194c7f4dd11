-- ses.lua: restock notifications through Amazon SES, API v2 SendEmail
-- (POST /v2/email/outbound-emails), every request signed with AWS
-- Signature Version 4 (M.sign, written on restock.crypto).
--
-- In plugin.lua:
--
--   require("ses").setup {
--     region = "eu-west-1",                    -- AWS_REGION
--     from = "Example Shop <shop@example.com>", -- a verified identity
--     configuration_set = "restock",           -- optional
--     public_url = "https://restock.example.com",
--   }
--
-- Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, for
-- temporary ones, AWS_SESSION_TOKEN (or access_key_id, secret_access_key,
-- session_token). SES_API_URL (or api_url) replaces
-- https://email.REGION.amazonaws.com. The other options are
-- restock_mail.lua's (docs/senders.md).
--
-- 200 is success (SES's MessageId is logged). 429, 5xx,
-- TooManyRequestsException, ThrottlingException and requests that never
-- got an answer are retried; MessageRejected, MailFromDomainNotVerified-
-- Exception, AccountSuspendedException, SendingPausedException,
-- BadRequestException, NotFoundException, LimitExceededException and
-- every authentication error (InvalidClientTokenId, SignatureDoesNotMatch,
-- AccessDenied, ExpiredToken, ...) are logged and marked dead.

local restock = require "restock"
local mail = require "restock_mail"

local M = {}

M.SERVICE = "ses"
M.PATH = "/v2/email/outbound-emails"

-- Error types a later try may not get.
M.RETRY_TYPES = {
  TooManyRequestsException = true, ThrottlingException = true,
  Throttling = true, InternalFailure = true, ServiceUnavailable = true,
}

local crypto = restock.crypto

local function hex_sha256(s)
  return crypto.hex(crypto.sha256(s))
end

-- RFC 3986 encoding of each segment of a path (the slashes stay).
local function canonical_path(path)
  if path == "" then
    return "/"
  end
  return (path:gsub("[^/]+", function(seg) return restock.url.encode(seg) end))
end

-- The canonical query of a list of {name, value} pairs (or a name ->
-- value table): names and values encoded, sorted by name, then value.
local function canonical_query(query)
  local pairs_ = {}
  for k, v in pairs(query or {}) do
    if type(k) == "number" then
      k, v = v[1], v[2]
    end
    pairs_[#pairs_ + 1] = { restock.url.encode(k), restock.url.encode(v or "") }
  end
  table.sort(pairs_, function(a, b)
    if a[1] ~= b[1] then
      return a[1] < b[1]
    end
    return a[2] < b[2]
  end)
  local out = {}
  for i, p in ipairs(pairs_) do
    out[i] = p[1] .. "=" .. p[2]
  end
  return table.concat(out, "&")
end

-- Signs a request with AWS Signature Version 4. r: method, path, query
-- (pairs), headers (name -> value; every one is signed, host and
-- x-amz-date among them), body, region, service, access_key, secret_key,
-- amz_date ("20150830T123600Z"). Returns the Authorization value and
-- {canonical_request=, string_to_sign=, signature=, signed_headers=}.
function M.sign(r)
  local names, lower = {}, {}
  for name, value in pairs(r.headers) do
    local n = name:lower()
    names[#names + 1] = n
    -- Values are trimmed and their runs of spaces made one (SigV4's
    -- canonical headers).
    lower[n] = tostring(value):gsub("^%s+", ""):gsub("%s+$", "")
      :gsub("%s+", " ")
  end
  table.sort(names)
  local canon_headers = {}
  for i, n in ipairs(names) do
    canon_headers[i] = n .. ":" .. lower[n] .. "\n"
  end
  local signed = table.concat(names, ";")
  local creq = table.concat({
    r.method, canonical_path(r.path or "/"), canonical_query(r.query),
    table.concat(canon_headers), signed, hex_sha256(r.body or ""),
  }, "\n")
  local date = r.amz_date:sub(1, 8)
  local scope = table.concat({ date, r.region, r.service, "aws4_request" },
    "/")
  local sts = table.concat({ "AWS4-HMAC-SHA256", r.amz_date, scope,
    hex_sha256(creq) }, "\n")
  local key = crypto.hmac_sha256("AWS4" .. r.secret_key, date)
  key = crypto.hmac_sha256(key, r.region)
  key = crypto.hmac_sha256(key, r.service)
  key = crypto.hmac_sha256(key, "aws4_request")
  local signature = crypto.hex(crypto.hmac_sha256(key, sts))
  local authorization = string.format(
    "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
    r.access_key, scope, signed, signature)
  return authorization, { canonical_request = creq, string_to_sign = sts,
    signature = signature, signed_headers = signed }
end

-- The Host header for a base URL, as curl sends it (no default port).
local function host_of(url)
  local scheme, authority = url:match("^(%a+)://([^/]+)")
  if not authority then
    return nil
  end
  if (scheme == "https" and authority:find(":443$"))
      or (scheme == "http" and authority:find(":80$")) then
    authority = authority:gsub(":%d+$", "")
  end
  return authority
end

-- The SendEmail body of one mail.
function M.body(config, m)
  local headers, names = {}, {}
  for name in pairs(m.headers) do
    names[#names + 1] = name
  end
  table.sort(names)
  for _, name in ipairs(names) do
    headers[#headers + 1] = { Name = name, Value = m.headers[name] }
  end
  local bodies = {}
  if m.text then
    bodies.Text = { Data = m.text, Charset = "UTF-8" }
  end
  if m.html then
    bodies.Html = { Data = m.html, Charset = "UTF-8" }
  end
  return {
    FromEmailAddress = m.from,
    Destination = { ToAddresses = { m.to } },
    ReplyToAddresses = m.reply_to and { m.reply_to } or nil,
    Content = { Simple = {
      Subject = { Data = m.subject, Charset = "UTF-8" },
      Body = bodies,
      Headers = headers,
    } },
    ConfigurationSetName = config.configuration_set,
  }
end

-- The error type of an SES answer: the x-amzn-ErrorType header, else the
-- body's __type or code, without the namespace or URL around it.
function M.error_type(res)
  local t = res.headers and res.headers["x-amzn-errortype"]
  local body = restock.json.decode(res.body or "")
  body = type(body) == "table" and body or {}
  t = t or body.__type or body.code or body.Code
  if type(t) ~= "string" then
    return nil, body
  end
  return t:gsub(":.*$", ""):gsub("^.*#", ""), body
end

function M.send(config, m)
  local body = restock.json.encode(M.body(config, m))
  local headers = {
    ["Host"] = config.host,
    ["Content-Type"] = "application/json",
    ["X-Amz-Date"] = os.date("!%Y%m%dT%H%M%SZ"),
  }
  if config.session_token then
    headers["X-Amz-Security-Token"] = config.session_token
  end
  local authorization = M.sign {
    method = "POST", path = M.PATH, headers = headers, body = body,
    region = config.region, service = M.SERVICE,
    access_key = config.access_key_id, secret_key = config.secret_access_key,
    amz_date = headers["X-Amz-Date"],
  }
  headers["Authorization"] = authorization
  local res, err = restock.http.request {
    method = "POST", url = config.api_url .. M.PATH, headers = headers,
    body = body, timeout = config.timeout,
  }
  if not res then
    return nil, "SES could not be reached: " .. err
  end
  local answer = restock.json.decode(res.body or "")
  if res.status == 200 then
    return true, type(answer) == "table" and answer.MessageId or "(no id)"
  end
  local kind, fields = M.error_type(res)
  local why = string.format("SES answered %d %s: %s", res.status,
    kind or "(no error type)", fields.message or fields.Message
      or (res.body or ""):sub(1, 300))
  if res.status == 429 or res.status >= 500 or M.RETRY_TYPES[kind] then
    return nil, why
  end
  return nil, why, { retry = false }
end

function M.setup(options)
  options = options or {}
  local config = mail.config("ses", options)
  config.access_key_id = options.access_key_id
    or os.getenv("AWS_ACCESS_KEY_ID")
  config.secret_access_key = options.secret_access_key
    or os.getenv("AWS_SECRET_ACCESS_KEY")
  config.session_token = options.session_token
    or os.getenv("AWS_SESSION_TOKEN")
  if config.session_token == "" then
    config.session_token = nil
  end
  config.region = options.region or os.getenv("AWS_REGION")
    or os.getenv("AWS_DEFAULT_REGION") or "us-east-1"
  config.configuration_set = options.configuration_set
    or os.getenv("SES_CONFIGURATION_SET")
  if not config.access_key_id or config.access_key_id == ""
      or not config.secret_access_key or config.secret_access_key == "" then
    error("ses: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
      .. "access_key_id and secret_access_key)", 2)
  end
  if not config.region:find("^[%w-]+$") then
    error("ses: region must be an AWS region name such as eu-west-1", 2)
  end
  if not config.from or config.from == "" then
    error("ses: set from to a verified identity's address", 2)
  end
  config.api_url = (options.api_url or os.getenv("SES_API_URL")
    or ("https://email." .. config.region .. ".amazonaws.com"))
    :gsub("/+$", "")
  config.host = host_of(config.api_url)
  if not config.host then
    error("ses: api_url must be an http(s):// URL", 2)
  end
  mail.register(config, function(m)
    return M.send(config, m)
  end)
  return config
end

return M
