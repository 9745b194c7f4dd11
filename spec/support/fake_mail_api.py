#!/usr/bin/env python3
"""Fakes of the Mailgun, Postmark and Amazon SES sending APIs for the specs
of scripts/mailgun.lua, postmark.lua and ses.lua, built from each
provider's public API reference. Standard library only.

Each request is checked as the provider would check it, and what was
wrong is recorded; a request the provider would refuse for its
credentials gets the provider's own answer (Mailgun's 401 "Forbidden",
Postmark's 401 with ErrorCode 10, SES's 403 SignatureDoesNotMatch, the
signature recomputed here from the request as received). Every request is
one JSON line in --log:

  {"n": 1, "method": "POST", "path": "...", "headers": {...},
   "body": "...", "fields": {name: [values]} (Mailgun) or the JSON body,
   "problems": ["what the provider would refuse", ...], "status": S}

A recipient whose local part names one of the provider's error shapes
(SHAPES: "rate_limited@example.com", ...) gets that answer to its first
request and success after, so one fake serves a whole table of cases.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--provider", required=True,
               choices=["mailgun", "postmark", "ses"])
p.add_argument("--log", required=True)
p.add_argument("--port-file", required=True)
p.add_argument("--key", default="")       # Mailgun key, Postmark token, AWS id
p.add_argument("--secret", default="")    # AWS secret access key
p.add_argument("--domain", default="mg.example.com")
p.add_argument("--region", default="eu-west-1")
p.add_argument("--lifetime", type=float, default=120.0)
ARGS = p.parse_args()
TRIED = set()
LOCK = threading.Lock()
COUNT = [0]

AMZ_TYPE = "x-amzn-ErrorType"
AMZ_NS = ":http://internal.amazon.com/coral/com.amazonaws.sesv2/"

# (status, headers, body) of each provider's answers, as their references
# show them.
SHAPES = {
    "mailgun": {
        "bad_address": (400, {}, {"message": "'to' parameter is not a valid "
                                             "address. please check "
                                             "documentation"}),
        "unauthorized": (401, {"Content-Type": "text/plain"}, "Forbidden"),
        "payment": (402, {}, {"message": "Request failed"}),
        "not_found": (404, {}, {"message": "Domain not found: "
                                          "mg.example.com"}),
        "rate_limited": (429, {}, {"message": "Too many requests"}),
        "server_error": (500, {}, {"message": "Internal Server Error"}),
        "unavailable": (503, {}, {"message": "Service Unavailable"}),
    },
    "postmark": {
        "unauthorized": (401, {}, {"ErrorCode": 10, "Message":
                                   "The Server Token you provided in the "
                                   "X-Postmark-Server-Token request header "
                                   "was invalid."}),
        "invalid_request": (422, {}, {"ErrorCode": 300, "Message":
                                      "Invalid 'To' address."}),
        "inactive_recipient": (422, {}, {"ErrorCode": 406, "Message":
                                         "You tried to send to recipient(s) "
                                         "that have been marked as "
                                         "inactive."}),
        "not_confirmed": (422, {}, {"ErrorCode": 401, "Message":
                                    "Sender signature not confirmed."}),
        "rate_limited": (429, {}, {"ErrorCode": 429, "Message":
                                   "Rate limit exceeded."}),
        "server_error": (500, {}, {"ErrorCode": 0, "Message":
                                   "Internal server error."}),
        "maintenance": (503, {}, {"ErrorCode": 100, "Message":
                                  "Maintenance."}),
    },
    "ses": {
        "message_rejected": (400, {AMZ_TYPE: "MessageRejected" + AMZ_NS},
                             {"message": "Email address is not verified. "
                                         "The following identities failed "
                                         "the check in region EU-WEST-1: "
                                         "shop@example.com"}),
        "not_verified": (400, {AMZ_TYPE: "MailFromDomainNotVerifiedException"
                               + AMZ_NS}, {"message": "MAIL FROM domain not "
                                                      "verified"}),
        "paused": (400, {AMZ_TYPE: "SendingPausedException" + AMZ_NS},
                   {"message": "Sending is paused for this account."}),
        "signature": (403, {AMZ_TYPE: "SignatureDoesNotMatch"},
                      {"message": "The request signature we calculated does "
                                  "not match the signature you provided."}),
        "throttled": (429, {AMZ_TYPE: "TooManyRequestsException" + AMZ_NS},
                      {"message": "Maximum sending rate exceeded."}),
        "throttling": (400, {AMZ_TYPE: "ThrottlingException"},
                       {"message": "Rate exceeded"}),
        "server_error": (500, {AMZ_TYPE: "InternalFailure"},
                         {"message": "Internal failure"}),
    },
}


def success(n, body):
    if ARGS.provider == "mailgun":
        return 200, {}, {"id": "<20260101120000.%d@%s>" % (n, ARGS.domain),
                         "message": "Queued. Thank you."}
    if ARGS.provider == "postmark":
        to = body.get("To") if isinstance(body, dict) else None
        return 200, {}, {"To": to, "SubmittedAt": "2026-01-01T12:00:00Z",
                         "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c3920%05d" % n,
                         "ErrorCode": 0, "Message": "OK"}
    return 200, {}, {"MessageId": "0100018c-fake-%06d-000000" % n}


# ---- Mailgun ---------------------------------------------------------------

MAILGUN_FIELDS = {"from", "to", "cc", "bcc", "subject", "text", "html",
                  "amp-html", "template", "recipient-variables"}


def check_mailgun(h, path, raw, problems):
    if path != "/v3/%s/messages" % ARGS.domain:
        problems.append("path %s is not /v3/%s/messages" % (path, ARGS.domain))
    want = "Basic " + base64.b64encode(("api:" + ARGS.key).encode()).decode()
    if h.get("authorization") != want:
        return SHAPES["mailgun"]["unauthorized"], None
    ctype = h.get("content-type", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        problems.append("content-type %s" % ctype)
    try:
        fields = urllib.parse.parse_qs(raw.decode(), keep_blank_values=True,
                                       strict_parsing=True)
    except ValueError as e:
        problems.append("body is not a form: %s" % e)
        return None, {}
    for name in fields:
        if name not in MAILGUN_FIELDS and not re.match(r"^[hovt]:.", name):
            problems.append("unknown field %s" % name)
    for name in ("from", "to"):
        if not fields.get(name):
            problems.append("missing %s" % name)
    if not (fields.get("text") or fields.get("html")):
        problems.append("neither text nor html")
    if not fields.get("subject"):
        problems.append("missing subject")
    return None, fields


# ---- Postmark --------------------------------------------------------------

POSTMARK_FIELDS = {"From", "To", "Cc", "Bcc", "Subject", "Tag", "HtmlBody",
                   "TextBody", "ReplyTo", "Headers", "TrackOpens",
                   "TrackLinks", "Metadata", "Attachments", "MessageStream"}


def check_postmark(h, path, raw, problems):
    if path != "/email":
        problems.append("path %s is not /email" % path)
    if h.get("x-postmark-server-token") != ARGS.key:
        return SHAPES["postmark"]["unauthorized"], None
    for name, want in (("accept", "application/json"),
                       ("content-type", "application/json")):
        if not h.get(name, "").startswith(want):
            problems.append("%s is %r, not %s" % (name, h.get(name), want))
    try:
        body = json.loads(raw)
    except ValueError:
        problems.append("body is not JSON")
        return None, None
    if not isinstance(body, dict):
        problems.append("body is not an object")
        return None, body
    for k in body:
        if k not in POSTMARK_FIELDS:
            problems.append("unknown field %s" % k)
    for k in ("From", "To", "Subject"):
        if not isinstance(body.get(k), str) or not body[k]:
            problems.append("missing %s" % k)
    if not (body.get("TextBody") or body.get("HtmlBody")):
        problems.append("neither TextBody nor HtmlBody")
    for hd in body.get("Headers") or []:
        if not (isinstance(hd, dict) and set(hd) == {"Name", "Value"}
                and all(isinstance(v, str) for v in hd.values())):
            problems.append("bad header entry %r" % (hd,))
    if "MessageStream" in body and not isinstance(body["MessageStream"], str):
        problems.append("MessageStream is not a string")
    return None, body


# ---- SES v2 and Signature Version 4 ---------------------------------------

def sigv4(method, path, query, headers, signed, body, date, secret, region):
    """An independent Signature Version 4 of the request as received."""
    def enc(s):
        return urllib.parse.quote(s, safe="-_.~")
    canon_path = "/".join(enc(seg) for seg in path.split("/")) or "/"
    pairs = sorted((enc(k), enc(v)) for k, v in
                   urllib.parse.parse_qsl(query, keep_blank_values=True))
    canon_query = "&".join("%s=%s" % kv for kv in pairs)
    canon_headers = "".join(
        "%s:%s\n" % (n, " ".join(headers.get(n, "").split()))
        for n in signed)
    creq = "\n".join([method, canon_path, canon_query, canon_headers,
                      ";".join(signed), hashlib.sha256(body).hexdigest()])
    scope = "%s/%s/ses/aws4_request" % (date[:8], region)
    sts = "\n".join(["AWS4-HMAC-SHA256", date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (date[:8], region, "ses", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


SES_FIELDS = {"FromEmailAddress", "FromEmailAddressIdentityArn",
              "Destination", "ReplyToAddresses",
              "FeedbackForwardingEmailAddress", "Content", "EmailTags",
              "ConfigurationSetName", "ListManagementOptions", "EndpointId"}


def check_ses(h, path, query, raw, problems):
    if path != "/v2/email/outbound-emails":
        problems.append("path %s is not /v2/email/outbound-emails" % path)
    auth = h.get("authorization", "")
    m = re.match(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/"
                 r"([^/]+)/aws4_request, SignedHeaders=([a-z0-9;-]+), "
                 r"Signature=([0-9a-f]{64})$", auth)
    date = h.get("x-amz-date", "")
    if not m or not re.match(r"^\d{8}T\d{6}Z$", date):
        problems.append("malformed Authorization or X-Amz-Date")
        return SHAPES["ses"]["signature"], None
    key, day, region, service, signed, signature = m.groups()
    signed = signed.split(";")
    when = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc)
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - when)
               .total_seconds())
    if key != ARGS.key or region != ARGS.region or service != "ses" \
            or day != date[:8] or skew > 300 \
            or not {"host", "x-amz-date"} <= set(signed) \
            or signed != sorted(signed) \
            or ("x-amz-security-token" in h
                and "x-amz-security-token" not in signed):
        problems.append("credential scope, date or signed headers wrong: "
                        "%s %s" % (auth, date))
        return SHAPES["ses"]["signature"], None
    want = sigv4("POST", path, query, h, signed, raw, date, ARGS.secret,
                 ARGS.region)
    if not hmac.compare_digest(want, signature):
        problems.append("signature does not match")
        return SHAPES["ses"]["signature"], None
    if not h.get("content-type", "").startswith("application/json"):
        problems.append("content-type %s" % h.get("content-type"))
    try:
        body = json.loads(raw)
    except ValueError:
        problems.append("body is not JSON")
        return None, None
    for k in body:
        if k not in SES_FIELDS:
            problems.append("unknown field %s" % k)
    if not isinstance(body.get("FromEmailAddress"), str):
        problems.append("missing FromEmailAddress")
    to = (body.get("Destination") or {}).get("ToAddresses")
    if not (isinstance(to, list) and to and all(isinstance(a, str)
                                                for a in to)):
        problems.append("Destination.ToAddresses is not a list of strings")
    simple = (body.get("Content") or {}).get("Simple") or {}
    if not isinstance((simple.get("Subject") or {}).get("Data"), str):
        problems.append("missing Content.Simple.Subject.Data")
    bodies = simple.get("Body") or {}
    if not bodies.get("Text") and not bodies.get("Html"):
        problems.append("neither Body.Text nor Body.Html")
    for part in bodies.values():
        if set(part) - {"Data", "Charset"} or not isinstance(
                part.get("Data"), str):
            problems.append("bad body part %r" % (part,))
    for hd in simple.get("Headers") or []:
        if set(hd) != {"Name", "Value"}:
            problems.append("bad header entry %r" % (hd,))
    return None, body


def recipient(parsed):
    """The request's first recipient, "" if none."""
    try:
        if ARGS.provider == "mailgun":
            return parsed["to"][0]
        if ARGS.provider == "postmark":
            return parsed["To"]
        return parsed["Destination"]["ToAddresses"][0]
    except (KeyError, IndexError, TypeError):
        return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        with LOCK:
            COUNT[0] += 1
            n = COUNT[0]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        h = {k.lower(): v for k, v in self.headers.items()}
        path, _, query = self.path.partition("?")
        problems = []
        if self.command != "POST":
            problems.append("method %s" % self.command)
        if ARGS.provider == "mailgun":
            refusal, parsed = check_mailgun(h, path, raw, problems)
        elif ARGS.provider == "postmark":
            refusal, parsed = check_postmark(h, path, raw, problems)
        else:
            refusal, parsed = check_ses(h, path, query, raw, problems)
        shape = recipient(parsed).partition("@")[0]
        with LOCK:
            first = shape not in TRIED
            TRIED.add(shape)
        if refusal:
            status, headers, answer = refusal
        elif first and shape in SHAPES[ARGS.provider]:
            status, headers, answer = SHAPES[ARGS.provider][shape]
        else:
            status, headers, answer = success(n, parsed)
        record = {"n": n, "method": self.command, "path": self.path,
                  "headers": h, "body": raw.decode("utf-8", "replace"),
                  "problems": problems, "status": status}
        record["fields" if ARGS.provider == "mailgun" else "json"] = parsed
        with LOCK, open(ARGS.log, "a") as f:
            f.write(json.dumps(record) + "\n")
        data = answer.encode() if isinstance(answer, str) else \
            json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", headers.get("Content-Type",
                                                     "application/json"))
        for k, v in headers.items():
            if k != "Content-Type":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def main():
    t = threading.Timer(ARGS.lifetime, lambda: os._exit(0))
    t.daemon = True
    t.start()
    server = Server(("127.0.0.1", 0), Handler)
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, ARGS.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
