#!/usr/bin/env python3
"""A small configurable HTTP(S) server that stands in for SendGrid, a webhook
receiver or any other service in the specs of restock.http.request and the
shipped scripts. Standard library only.

It listens on 127.0.0.1 (port 0 by default: any free port), writes the port
it got to --port-file (written atomically once it accepts connections) and
to stdout, and records every request as one JSON line in --log:

  {"kind": "request", "n": 1, "method": "POST", "path": "/v3/mail/send",
   "headers": {lower-case name: value}, "body": "...", "json": {...} or null,
   "personalizations": N or null, "recipients": [emails] or null,
   "to_counts": [number of `to` entries of each personalization] or null,
   "signature_ok": true/false/null, "status": answer status, "time": t}

and, once the request is over, {"kind": "done", "n": 1, "status": S,
"client_gone": bool, "held": seconds}, where client_gone says that the
client closed its connection while the answer was held (--delay).

Modes:
  --status S              the answer's status (202 by default)
  --body TEXT             the answer's body (empty by default)
  --header "Name: value"  an extra answer header (repeatable)
  --fail-first N          answer the first N requests with --fail-status
  --fail-status S         500 by default
  --fail-body TEXT        the body of those failed answers
  --delay SECONDS         hold every answer this long
  --delay-first N         only hold the first N answers (0: all; default)
  --tls CERT KEY          speak HTTPS with this certificate and key
  --webhook-secret S      verify X-Restockd-Signature against
                          "sha256=" + hex(HMAC-SHA256(S, timestamp "." body))
  --lifetime SECONDS      exit on its own after this long (120 by default),
                          so that a spec that dies cannot leave it behind
"""
import argparse
import hashlib
import hmac
import json
import os
import select
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--log", required=True)
    p.add_argument("--status", type=int, default=202)
    p.add_argument("--body", default="")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=500)
    p.add_argument("--fail-body", default="")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--delay-first", type=int, default=0)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--webhook-secret")
    p.add_argument("--lifetime", type=float, default=120.0)
    return p.parse_args()


ARGS = parse_args()
LOCK = threading.Lock()
COUNT = [0]


def record(entry):
    line = json.dumps(entry, separators=(",", ":")) + "\n"
    with LOCK:
        with open(ARGS.log, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()


def client_gone(sock):
    """True when the peer has closed a plain TCP connection (EOF waiting)."""
    if isinstance(sock, ssl.SSLSocket):
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def handle_any(self):
        start = time.time()
        with LOCK:
            COUNT[0] += 1
            n = COUNT[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        text = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body_json = json.loads(text) if text else None
        except ValueError:
            body_json = None

        personalizations = recipients = to_counts = None
        if isinstance(body_json, dict) and isinstance(
                body_json.get("personalizations"), list):
            ps = body_json["personalizations"]
            personalizations = len(ps)
            recipients, to_counts = [], []
            for p in ps:
                to = p.get("to") if isinstance(p, dict) else None
                to = to if isinstance(to, list) else []
                to_counts.append(len(to))
                for t in to:
                    if isinstance(t, dict):
                        recipients.append(t.get("email"))

        signature_ok = None
        expected = None
        if ARGS.webhook_secret is not None:
            ts = headers.get("x-restockd-timestamp", "")
            expected = "sha256=" + hmac.new(
                ARGS.webhook_secret.encode(), ts.encode() + b"." + raw,
                hashlib.sha256).hexdigest()
            got = headers.get("x-restockd-signature", "")
            signature_ok = hmac.compare_digest(expected, got)

        failing = n <= ARGS.fail_first
        status = ARGS.fail_status if failing else ARGS.status
        answer = (ARGS.fail_body if failing else ARGS.body).encode()

        record({"kind": "request", "n": n, "method": self.command,
                "path": self.path, "headers": headers, "body": text,
                "json": body_json, "personalizations": personalizations,
                "recipients": recipients, "to_counts": to_counts,
                "signature_ok": signature_ok,
                "signature_expected": expected, "status": status,
                "time": start})

        gone = False
        if ARGS.delay > 0 and (ARGS.delay_first == 0 or n <= ARGS.delay_first):
            until = start + ARGS.delay
            while time.time() < until:
                if not gone and client_gone(self.connection):
                    gone = True
                time.sleep(0.02)
        if not gone:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.send_header("X-Fake-Request", str(n))
                for h in ARGS.header:
                    name, _, value = h.partition(":")
                    self.send_header(name.strip(), value.strip())
                self.end_headers()
                self.wfile.write(answer)
                self.wfile.flush()
            except OSError:
                gone = True
        if gone:
            self.close_connection = True
        record({"kind": "done", "n": n, "status": status,
                "client_gone": gone, "held": time.time() - start})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

    def do_HEAD(self):
        self.handle_any()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that goes away (or refuses our certificate) is fine


def main():
    # Safety net: never outlive a spec that forgot to stop us.
    t = threading.Timer(ARGS.lifetime, lambda: os._exit(0))
    t.daemon = True
    t.start()

    server = Server(("127.0.0.1", ARGS.port), Handler)
    if ARGS.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ARGS.tls[0], ARGS.tls[1])
        # The handshake happens on the first read, in the request's own
        # thread, so a client that stalls or refuses the certificate never
        # holds up the accept loop.
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    port = server.server_address[1]
    if ARGS.port_file:
        tmp = ARGS.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, ARGS.port_file)
    sys.stdout.write("%d\n" % port)
    sys.stdout.flush()
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
