#!/usr/bin/env python3
"""A fake shop backend for the connector specs: the parts of WooCommerce's
REST API and of Medusa's Admin API (v2, or v1) that scripts/woocommerce.lua
and scripts/medusa.lua poll. Standard library only.

The shop's data is a JSON file (--state) that the spec rewrites whenever it
wants the shop to change; it is read again on every request:

  {"woocommerce": {"auth": "ck:cs", "products": [...],
                   "variations": {"PARENT_ID": [...]}},
   "medusa": {"version": 2, "api_key": "sk_...", "token": "...",
              "variants": [...], "inventory_items": [...], "orders": [...],
              "stock_locations": [...], "api_keys": [...], "products": [...]}}

Filters and paging behave as the real APIs document them:
  WooCommerce GET /wp-json/wc/v3/products  modified_after (with
    dates_are_gmt, against date_modified_gmt), per_page, page;
    GET /wp-json/wc/v3/products/ID/variations  per_page, page.
    (woocommerce.github.io/woocommerce-rest-api-docs: "List all products",
    "List all product variations"; HTTP Basic with the consumer key.)
  Medusa v2 GET /admin/product-variants  updated_at[$gte], order, limit,
    offset; GET /admin/inventory-items  limit, offset; GET /admin/orders
    created_at[$gte]; GET /admin/stock-locations; GET /admin/api-keys
    (docs.medusajs.com/api/admin; a secret API key as HTTP Basic user, or a
    Bearer token). Lists answer {"<name>": [...], "count", "offset",
    "limit"}.
  Medusa v1 answers 404 on /admin/product-variants and serves GET
    /admin/products (updated_at[gte], with variants) and GET /admin/orders
    (created_at[gte]) instead, with x-medusa-access-token.

Every request is logged to --log as JSON lines, as fake_http.py does:
{"kind": "request", "n", "method", "path", "query": {name: value},
 "headers": {...}, "status"}.
"""
import argparse
import base64
import json
import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--log", required=True)
    p.add_argument("--state", required=True)
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


def state():
    try:
        with open(ARGS.state, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def as_list(v):
    # Lua's cjson writes an empty table as {}.
    return v if isinstance(v, list) else []


def page(rows, query, name):
    limit = int(query.get("limit", "50"))
    offset = int(query.get("offset", "0"))
    return {name: rows[offset:offset + limit], "count": len(rows),
            "offset": offset, "limit": limit}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with LOCK:
            COUNT[0] += 1
            n = COUNT[0]
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        st = state()
        if url.path.startswith("/wp-json/wc/v3/"):
            status, body = self.woocommerce(st.get("woocommerce", {}),
                                            url.path, query, headers)
        elif url.path.startswith("/admin/"):
            status, body = self.medusa(st.get("medusa", {}), url.path, query,
                                       headers)
        else:
            status, body = 404, {"message": "not found"}
        record({"kind": "request", "n": n, "method": "GET", "path": url.path,
                "query": query, "headers": headers, "status": status})
        self.answer(status, body)

    # ---- WooCommerce ---------------------------------------------------------

    def woocommerce(self, shop, path, query, headers):
        want = "Basic " + base64.b64encode(
            shop.get("auth", "").encode()).decode()
        if headers.get("authorization") != want:
            return 401, {"code": "woocommerce_rest_cannot_view",
                         "message": "Sorry, you cannot list resources."}
        per_page = int(query.get("per_page", "10"))
        number = int(query.get("page", "1"))
        if path == "/wp-json/wc/v3/products":
            rows = as_list(shop.get("products"))
            after = query.get("modified_after")
            if after:
                # modified_after is exclusive; compare as UTC seconds.
                cut = after.replace("Z", "")[:19]
                rows = [p for p in rows
                        if p.get("date_modified_gmt", "")[:19] > cut]
        else:
            parts = path.split("/")
            if len(parts) == 7 and parts[6] == "variations":
                rows = as_list(shop.get("variations", {}).get(parts[5]))
            else:
                return 404, {"code": "rest_no_route"}
        start = (number - 1) * per_page
        return 200, rows[start:start + per_page]

    # ---- Medusa ----------------------------------------------------------------

    def medusa(self, shop, path, query, headers):
        version = shop.get("version", 2)
        auth = headers.get("authorization", "")
        ok = False
        if shop.get("api_key") and auth.startswith("Basic "):
            user = base64.b64decode(auth[6:]).decode()
            ok = user == shop["api_key"] + ":"
        if shop.get("token") and (auth == "Bearer " + shop["token"] or
                                  headers.get("x-medusa-access-token") ==
                                  shop["token"]):
            ok = True
        if not ok:
            return 401, {"message": "Unauthorized"}
        if version == 2:
            if path == "/admin/product-variants":
                rows = as_list(shop.get("variants"))
                since = query.get("updated_at[$gte]")
                if since:
                    rows = [v for v in rows if v["updated_at"] >= since]
                rows.sort(key=lambda v: v["updated_at"])
                return 200, page(rows, query, "variants")
            if path == "/admin/inventory-items":
                return 200, page(as_list(shop.get("inventory_items")), query,
                                 "inventory_items")
            if path == "/admin/stock-locations":
                return 200, page(as_list(shop.get("stock_locations")), query,
                                 "stock_locations")
            if path == "/admin/api-keys":
                return 200, page(as_list(shop.get("api_keys")), query,
                                 "api_keys")
            if path == "/admin/orders":
                rows = as_list(shop.get("orders"))
                since = query.get("created_at[$gte]")
                if since:
                    rows = [o for o in rows if o["created_at"] >= since]
                rows.sort(key=lambda o: o["created_at"])
                return 200, page(rows, query, "orders")
        else:
            if path == "/admin/products":
                rows = as_list(shop.get("products"))
                since = query.get("updated_at[gte]")
                if since:
                    rows = [p for p in rows if p["updated_at"] >= since]
                return 200, page(rows, query, "products")
            if path == "/admin/orders":
                rows = as_list(shop.get("orders"))
                since = query.get("created_at[gte]")
                if since:
                    rows = [o for o in rows if o["created_at"] >= since]
                return 200, page(rows, query, "orders")
        return 404, {"type": "not_found", "message": "Cannot GET " + path}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass


def main():
    t = threading.Timer(ARGS.lifetime, lambda: os._exit(0))
    t.daemon = True
    t.start()
    server = Server(("127.0.0.1", ARGS.port), Handler)
    port = server.server_address[1]
    if ARGS.port_file:
        tmp = ARGS.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, ARGS.port_file)
    print(port, flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
