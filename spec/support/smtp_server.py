#!/usr/bin/env python3
"""A real SMTP server for the specs of restock.smtp.send and scripts/smtp.lua:
Debian's python3-aiosmtpd, on 127.0.0.1 and a free port, with modes that
answer as a troubled server would.

It writes the port it got to --port-file once it accepts connections, and
records every message as one JSON line in --log, parsed back with Python's
email package (policy.default, so encoded words and quoted-printable are
decoded as a mail client would):

  {"kind": "message", "n": 1, "mail_from": "...", "rcpt_tos": [...],
   "tls": bool, "auth": login or null, "raw": the message as received
   (after SMTP's dot-unstuffing), "headers": [[name, decoded value], ...],
   "raw_headers": [[name, value as sent], ...], "defects": [...],
   "content_type": "multipart/alternative", "parts": [{"content_type",
   "charset", "cte", "body"}], "max_line": longest line in octets,
   "bare_lf": bool}

and every RCPT it refused as {"kind": "refused", "rcpt": ..., "reply": ...}.

Modes:
  --tempfail-first N   answer the first N RCPTs not rejected "451 4.3.0 Try again later"
  --reject SUBSTR      answer "550 5.1.1 No such user" to any RCPT holding it
  --auth USER:PASS     require AUTH (PLAIN or LOGIN) with these credentials
  --starttls CERT KEY  offer STARTTLS with this certificate
  --require-starttls   refuse mail before STARTTLS
  --tls CERT KEY       implicit TLS (smtps://)
  --count-only         record nothing but a count in --count-file (the bench)
  --lifetime SECONDS   exit on its own after this long (120 by default)
"""
import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log")
    p.add_argument("--count-file")
    p.add_argument("--tempfail-first", type=int, default=0)
    p.add_argument("--reject", action="append", default=[])
    p.add_argument("--auth")
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--require-starttls", action="store_true")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--count-only", action="store_true")
    p.add_argument("--lifetime", type=float, default=120.0)
    return p.parse_args()


ARGS = parse_args()
STATE = {"n": 0, "rcpt": 0}


def record(entry):
    with open(ARGS.log, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, separators=(",", ":")) + "\n")


def describe(raw):
    """The message as a mail client reads it."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = []
    for part in (msg.walk() if msg.is_multipart() else [msg]):
        if part.is_multipart():
            continue
        parts.append({
            "content_type": part.get_content_type(),
            "charset": part.get_content_charset(),
            "cte": part.get("Content-Transfer-Encoding"),
            "body": part.get_content(),
        })
    raw_msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    lines = raw.split(b"\r\n")
    return {
        "headers": [[k, str(v)] for k, v in msg.items()],
        "raw_headers": [[k, v] for k, v in raw_msg.items()],
        "defects": [repr(d) for d in msg.defects] +
                   [repr(d) for p in msg.walk() for d in p.defects],
        "content_type": msg.get_content_type(),
        "parts": parts,
        "max_line": max(len(line) for line in lines),
        "max_body_line": max(len(line) for line in
                             raw.split(b"\r\n\r\n", 1)[-1].split(b"\r\n")),
        "bare_lf": b"\n" in b"".join(lines),
    }


class Handler:
    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        reply = None
        # Rejected addresses first, so that which RCPTs get the temporary
        # failure does not depend on the order deliveries happen to run in.
        if any(s in address for s in ARGS.reject):
            reply = "550 5.1.1 No such user here"
        else:
            STATE["rcpt"] += 1
            if STATE["rcpt"] <= ARGS.tempfail_first:
                reply = "451 4.3.0 Try again later"
        if reply:
            if not ARGS.count_only:
                record({"kind": "refused", "rcpt": address, "reply": reply})
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        STATE["n"] += 1
        if ARGS.count_only:
            if STATE["n"] % 100 == 0:
                write_count()
            return "250 2.0.0 Message accepted"
        raw = envelope.original_content or envelope.content
        entry = {"kind": "message", "n": STATE["n"],
                 "mail_from": envelope.mail_from,
                 "rcpt_tos": list(envelope.rcpt_tos),
                 "tls": (session.ssl is not None or server.transport
                         .get_extra_info("ssl_object") is not None),
                 "auth": (session.auth_data.login.decode()
                          if session.authenticated
                          and isinstance(session.auth_data, LoginPassword)
                          else None),
                 "raw": raw.decode("utf-8", "replace")}
        try:
            entry.update(describe(raw))
        except Exception as e:  # a message Python cannot parse is a finding
            entry["parse_error"] = repr(e)
        record(entry)
        return "250 2.0.0 Message accepted"


def write_count():
    tmp = ARGS.count_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(STATE["n"]))
    os.replace(tmp, ARGS.count_file)


def authenticator(server, session, envelope, mechanism, auth_data):
    user, _, password = ARGS.auth.partition(":")
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == user.encode()
          and auth_data.password == password.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def context(pair):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pair[0], pair[1])
    return ctx


async def main():
    handler = Handler()
    kwargs = {"hostname": "restockd-spec.test", "ident": "restockd spec SMTP"}
    if ARGS.auth:
        kwargs.update(authenticator=authenticator, auth_required=True,
                      # Plain connections may authenticate only when there
                      # is no TLS to be had; with STARTTLS offered, AUTH
                      # waits for it, as real servers do.
                      auth_require_tls=bool(ARGS.starttls or ARGS.tls))
    if ARGS.starttls:
        kwargs.update(tls_context=context(ARGS.starttls),
                      require_starttls=ARGS.require_starttls)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, **kwargs), "127.0.0.1", 0,
        ssl=context(ARGS.tls) if ARGS.tls else None, backlog=128)
    port = server.sockets[0].getsockname()[1]
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, ARGS.port_file)
    print(port, flush=True)
    if ARGS.count_only:
        async def flush():
            while True:
                await asyncio.sleep(0.05)
                write_count()
        asyncio.ensure_future(flush())
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    t = threading.Timer(ARGS.lifetime, lambda: os._exit(0))
    t.daemon = True
    t.start()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
