/* The route table, the dispatcher, and helpers shared by the routes. */
#include "api.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "json_text.h"
#include "log.h"
#include "metrics.h"
#include "node.h"
#include "ratelimit.h"
#include "router.h"
#include "sessions.h"
#include "stock.h"
#include "url.h"
#include "xmalloc.h"

static void api_health(HttpRequest *req, void *data) {
  Api *api = data;
  /* Issue 14: while the database is unreachable (PostgreSQL down), a load
   * balancer should send requests to another node. */
  if (!store_healthy(api->d->store)) {
    http_respond_error(req, 503, "unexpected_state",
                       "The database is unreachable");
    return;
  }
  http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* GET /metrics: Prometheus text format. No auth: the bind address is the
 * guard. The gauges are counted off the loop. */
typedef struct {
  ReadCall call;
  HttpRequest *req;
  Buf out; /* the counters, rendered as the request came */
  MetricsGauges g;
} MetricsRead;

static int metrics_fn(StoreTx *tx, ReadCall *c) {
  MetricsRead *m = (MetricsRead *)c;
  int rc = store_subscription_count(tx, &m->g.active_subscriptions);
  if (rc == 0) rc = store_check_count(tx, &m->g.pending_checks);
  if (rc == 0) rc = store_delivery_pending_count(tx, &m->g.pending_deliveries);
  return rc;
}

static void metrics_done(ReadCall *c, int status) {
  MetricsRead *m = (MetricsRead *)c;
  StoreStats st;
  store_stats(c->unit.d->store, &st);
  m->g.store_commits = st.groups;
  m->g.store_units = st.units;
  m->g.store_failed_commits = st.failed_commits;
  m->g.wal_max_bytes = st.wal_max_bytes;
  /* Issue 14: round trips to PostgreSQL, and this node. */
  m->g.store_round_trips = st.round_trips;
  Domain *d = c->unit.d;
  m->g.node = d->node ? node_id(d->node) : NULL;
  m->g.backend = store_backend(d->store);
  if (status) {
    api_fail(m->req, status, NULL);
  } else {
    metrics_render_state(&m->out, &m->g);
    http_respond(m->req, 200, "text/plain; version=0.0.4; charset=utf-8",
                 m->out.data, m->out.len);
  }
  buf_free(&m->out);
  free(m);
}

static void api_metrics(HttpRequest *req, void *data) {
  Api *api = data;
  MetricsRead *m = xcalloc(1, sizeof *m);
  m->req = http_defer(req);
  metrics_render_counters(&m->out);
  m->call.fn = metrics_fn;
  m->call.done = metrics_done;
  domain_read(api->d, &m->call);
}

/* OPTIONS on a store route: the CORS preflight, answered by api_handle's
 * CORS headers. */
static void api_preflight(HttpRequest *req, void *app) {
  http_respond(req, 204, NULL, "", 0);
}

static const Route routes[] = {
    {"GET", "/health", api_health},
    {"GET", "/metrics", api_metrics},
    {"POST", "/restock-notifications/variants/{variant_id}", api_subscribe},
    {"OPTIONS", "/restock-notifications/variants/{variant_id}", api_preflight},
    {"GET", "/restock-notifications/unsubscribe", api_unsubscribe},
    {"POST", "/restock-notifications/unsubscribe", api_unsubscribe},
    {"OPTIONS", "/restock-notifications/unsubscribe", api_preflight},
    {"GET", "/restock-notifications/confirm", api_confirm},
    {"POST", "/restock-notifications/confirm", api_confirm},
    {"OPTIONS", "/restock-notifications/confirm", api_preflight},
    {"GET", "/restock-notifications/mine", api_mine},
    {"GET", "/admin/restock-notifications/export", api_admin_export},
    {"POST", "/admin/variants", api_admin_variants_post},
    {"GET", "/admin/variants", api_admin_variants_get},
    {"GET", "/admin/variants/{id}", api_admin_variant_get},
    {"POST", "/admin/variants/{id}", api_admin_variant_post},
    {"DELETE", "/admin/variants/{id}", api_admin_variant_delete},
    {"POST", "/admin/products/{product_id}/variants/{id}",
     api_admin_product_variant_post},
    {"GET", "/admin/restock-notifications", api_admin_notifications_get},
    {"DELETE", "/admin/restock-notifications", api_admin_notifications_delete},
    {"POST", "/admin/stock-locations", api_admin_locations_post},
    {"GET", "/admin/stock-locations", api_admin_locations_get},
    {"DELETE", "/admin/stock-locations/{id}", api_admin_location_delete},
    {"POST", "/admin/sales-channels", api_admin_channels_post},
    {"GET", "/admin/sales-channels", api_admin_channels_get},
    {"DELETE", "/admin/sales-channels/{id}", api_admin_channel_delete},
    {"POST", "/admin/inventory-levels", api_admin_levels_post},
    {"GET", "/admin/inventory-levels", api_admin_levels_get},
    {"POST", "/admin/publishable-api-keys", api_admin_keys_post},
    {"GET", "/admin/publishable-api-keys", api_admin_keys_get},
    {"DELETE", "/admin/publishable-api-keys/{id}", api_admin_key_delete},
    {"POST", "/admin/inventory/batch", api_admin_batch_post},
    {"GET", "/admin/events", api_admin_events_get},
    {"POST", "/admin/events/{id}/retry", api_admin_event_retry},
    {"GET", "/admin/nodes", api_admin_nodes_get},
    {"GET", "/admin/reports/conversions", api_admin_conversions_get},
    /* The web pages (issue 17). */
    {"GET", "/widget.js", api_widget},
    {"GET", "/admin/", api_console_page},
    {"GET", "/admin/console.js", api_console_script},
    {"GET", "/admin/console.css", api_console_style},
    {"POST", "/admin/login", api_console_login},
    {"POST", "/admin/logout", api_console_logout},
    {"GET", "/admin/session", api_console_session},
    {"GET", "/admin/reports/demand", api_admin_demand},
};
#define NROUTES (sizeof routes / sizeof routes[0])

/* Most query parameters a request may carry. */
#define MAX_PARAMS 64

void api_set_admin_token(Api *api, const char *token) {
  api->admin_enabled = token && *token;
  if (api->admin_enabled)
    SHA256((const unsigned char *)token, strlen(token), api->admin_digest);
}

/* Compares a token with the configured one in constant time: both are
 * hashed first, so not even their lengths leak through timing. */
bool api_admin_token_ok(const Api *app, const char *token) {
  if (!app->admin_enabled) return false;
  unsigned char digest[32];
  SHA256((const unsigned char *)token, strlen(token), digest);
  return CRYPTO_memcmp(digest, app->admin_digest, sizeof digest) == 0;
}

static bool admin_authorized(const Api *app, const HttpRequest *req) {
  if (!app->admin_enabled) return false;
  const char *auth = http_header(req, "authorization");
  if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) return false;
  const char *token = auth + 7;
  while (*token == ' ') token++;
  return api_admin_token_ok(app, token);
}

/* The admin paths anyone may fetch: the console's files and its login. */
static bool console_public(const HttpRequest *req, RouteStatus status) {
  if (status != ROUTE_FOUND) return false;
  RouteFn fn = req->match.route->fn;
  return fn == api_console_page || fn == api_console_script ||
         fn == api_console_style || fn == api_console_login;
}

static bool is_admin_path(const HttpRequest *req) {
  return req->path_len >= 6 && memcmp(req->path, "/admin", 6) == 0 &&
         (req->path_len == 6 || req->path[6] == '/');
}

static bool is_hooks_path(const HttpRequest *req) {
  return req->path_len > 7 && memcmp(req->path, "/hooks/", 7) == 0;
}

static bool is_store_path(const HttpRequest *req) {
  static const char prefix[] = "/restock-notifications/";
  return req->path_len >= sizeof prefix - 1 &&
         memcmp(req->path, prefix, sizeof prefix - 1) == 0;
}

/* True when `origin` is in store_cors, a comma-separated list ("*" allows
 * any origin). */
static bool origin_allowed(const char *list, const char *origin) {
  size_t olen = strlen(origin);
  for (const char *p = list; *p;) {
    while (*p == ' ' || *p == ',') p++;
    const char *end = p;
    while (*end && *end != ',') end++;
    const char *last = end;
    while (last > p && last[-1] == ' ') last--;
    size_t len = (size_t)(last - p);
    if ((len == 1 && *p == '*') || (len == olen && memcmp(p, origin, len) == 0))
      return len > 0;
    p = end;
  }
  return false;
}

/* CORS for the storefront routes: a listed origin is echoed, with Vary:
 * Origin so that caches keep answers per origin; others get no allow
 * header, and the browser refuses the answer. */
static void add_cors(Api *app, HttpRequest *req) {
  const char *list = app->d->config->options.store_cors;
  if (!list || !is_store_path(req)) return;
  http_add_header(req, "Vary", "Origin");
  const char *origin = http_header(req, "origin");
  if (!origin || !origin_allowed(list, origin)) return;
  http_add_header(req, "Access-Control-Allow-Origin", origin);
  /* The widget shows the wait of a 429. */
  http_add_header(req, "Access-Control-Expose-Headers", "Retry-After");
  if (strcmp(req->method, "OPTIONS") == 0) {
    http_add_header(req, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    http_add_header(req, "Access-Control-Allow-Headers",
                    "Content-Type, X-Publishable-API-Key");
    http_add_header(req, "Access-Control-Max-Age", "600");
  }
}

/* The client's address: the peer, or behind a trusted reverse proxy the
 * last X-Forwarded-For entry (the one the proxy added). Several header lines
 * make one list, so the last entry is that of the last line: a client
 * cannot pick its address by sending a line of its own before the proxy's. */
void api_client_address(Api *app, const HttpRequest *req, char *out,
                        size_t len) {
  const char *xff = NULL;
  if (app->d->config->options.trust_proxy)
    for (size_t i = 0; i < req->nheaders; i++)
      if (strcmp(req->headers[i].name, "x-forwarded-for") == 0)
        xff = req->headers[i].value;
  if (!xff || !*xff) {
    snprintf(out, len, "%s", req->client_addr);
    return;
  }
  const char *last = strrchr(xff, ',');
  last = last ? last + 1 : xff;
  while (*last == ' ') last++;
  size_t n = strcspn(last, " ");
  snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), last);
}

/* subscribe_rate_limit: true if the request may go on, else answered 429. */
static bool rate_allowed(Api *app, HttpRequest *req) {
  long long limit = app->d->config->options.subscribe_rate_limit;
  if (limit <= 0 || req->match.route->fn != api_subscribe) return true;
  char client[64];
  api_client_address(app, req, client, sizeof client);
  long long retry = 0;
  if (ratelimit_take(app->ratelimit, client, limit, uv_now(app->loop), &retry))
    return true;
  char value[32];
  snprintf(value, sizeof value, "%lld", retry);
  http_add_header(req, "Retry-After", value);
  http_respond_error(req, 429, "too_many_requests",
                     "Too many subscribe requests from %s; retry in %lld s",
                     client, retry);
  return false;
}

static void dispatch(Api *app, HttpRequest *req);

/* A path under /hooks/: the plugin's routes (restock.route). They take no
 * admin token (the script checks its caller, a signature) and no rate
 * limit; their bodies are bounded like every request's. */
static void serve_hook(Api *app, HttpRequest *req) {
  if (req->query &&
      url_parse_pairs(req->query, req->query_len, MAX_PARAMS, &req->params)) {
    http_respond_error(req, 400, "invalid_data",
                       "The query string is malformed or too long");
    return;
  }
  char client[64], allow[128];
  api_client_address(app, req, client, sizeof client);
  int rc = app->hooks(app->hooks_ctx, req, client, allow, sizeof allow);
  if (rc == RESTOCK_ENOTALLOWED) {
    http_add_header(req, "Allow", allow);
    http_respond_error(req, 405, "not_allowed",
                       "Method %s is not allowed here; allowed: %s",
                       req->method, allow);
  } else if (rc) {
    http_respond_error(req, 404, "not_found", "Route %s %.*s was not found",
                       req->method, (int)req->path_len, req->path);
  }
}

void api_rejected(void *data, int status, const char *client) {
  metrics_http("malformed", status, 0);
  log_access("-", "malformed", "-", status, 0, client);
}

void api_handle(HttpRequest *req, void *data) { dispatch(data, req); }

void api_answered(void *data, HttpRequest *req) {
  Api *app = data;
  const char *route =
      req->match.route ? req->match.route->pattern : "unmatched";
  double seconds = (double)(uv_hrtime() - req->start_ns) / 1e9;
  metrics_http(route, req->status, seconds);
  char path[256];
  snprintf(path, sizeof path, "%.*s",
           (int)(req->path_len < 255 ? req->path_len : 255), req->path);
  char client[64];
  api_client_address(app, req, client, sizeof client);
  log_access(req->method, route, path, req->status, seconds * 1000, client);
}

static void dispatch_route(Api *app, HttpRequest *req, RouteStatus status);

/* ---- the console's session cookie --------------------------------------- */

typedef struct {
  SessionCall call;
  Api *api;
  HttpRequest *req;
  RouteStatus status;
} ConsoleAuth;

static bool state_changing(const char *method) {
  return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
         strcmp(method, "OPTIONS") != 0;
}

/* True when the Origin header names this server as the browser reached it:
 * the scheme (https when a trusted proxy says so) and the Host header. */
static bool same_origin(Api *app, const HttpRequest *req) {
  const char *origin = http_header(req, "origin");
  const char *host = http_header(req, "host");
  if (!origin || !host || !*host) return false;
  const char *scheme = api_console_https(app, req) ? "https://" : "http://";
  size_t n = strlen(scheme);
  return strncasecmp(origin, scheme, n) == 0 &&
         strcasecmp(origin + n, host) == 0;
}

/* The session check's completion: the route runs, or the request is
 * refused (401 for a session that is not valid, 403 for a state-changing
 * request that does not show it comes from the console). */
static void console_authorized(SessionCall *c, int status) {
  ConsoleAuth *a = c->arg;
  Api *app = a->api;
  HttpRequest *req = a->req;
  if (!req->conn) {
    /* The client left, and its headers with it: the answer is dropped. */
    http_respond_error(req, 503, "unexpected_state", "The client left");
  } else if (status == RESTOCK_ENOTFOUND) {
    api_console_clear_cookie(app, req);
    http_respond_error(req, 401, "unauthorized",
                       "The console session is not valid (it ended, or you "
                       "logged out): log in again");
  } else if (status) {
    api_fail(req, status, NULL);
  } else if (state_changing(req->method) && !same_origin(app, req) &&
             !sessions_csrf_ok(app->d, c->cookie,
                               http_header(req, "x-restock-csrf"))) {
    http_respond_error(req, 403, "not_allowed",
                       "A change made with the console's cookie must come "
                       "from the console: a same-origin Origin header, or "
                       "X-Restock-CSRF with the session's csrf_token");
  } else {
    app->session = c->cookie;
    app->session_expires = c->expires_at;
    dispatch_route(app, req, a->status);
    app->session = NULL;
  }
  OPENSSL_cleanse(c->cookie, sizeof c->cookie);
  free(a);
}

static void dispatch(Api *app, HttpRequest *req) {
  add_cors(app, req);
  /* Matched first so that metrics name the route of a 401 too; the token is
   * still checked before anything is answered about an admin path. */
  RouteStatus status = router_match(routes, NROUTES, req->method, req->path,
                                    req->path_len, &req->match);
  /* "/admin" typed without its slash: the console is at /admin/, where its
   * relative links resolve. */
  if (req->path_len == 6 && strcmp(req->method, "GET") == 0 &&
      memcmp(req->path, "/admin", 6) == 0) {
    http_add_header(req, "Location", "/admin/");
    http_respond(req, 301, "text/plain; charset=utf-8", "/admin/\n", 8);
    return;
  }
  if (is_admin_path(req) && !console_public(req, status) &&
      !admin_authorized(app, req)) {
    char cookie[SESSION_COOKIE_LEN + 1];
    if (app->admin_enabled &&
        sessions_cookie(http_header(req, "cookie"), cookie)) {
      /* The session is a row of the database (so every node knows it):
       * the route runs once it has been read. */
      ConsoleAuth *a = xcalloc(1, sizeof *a);
      a->api = app;
      a->status = status;
      memcpy(a->call.cookie, cookie, sizeof cookie);
      a->call.done = console_authorized;
      a->call.arg = a;
      a->req = http_defer_with_body(req);
      sessions_check(app->d, &a->call);
      return;
    }
    http_add_header(req, "WWW-Authenticate", "Bearer");
    http_respond_error(req, 401, "unauthorized",
                       app->admin_enabled ? "A valid admin token is required"
                                          : "The admin API is disabled: set "
                                            "RESTOCK_ADMIN_TOKEN to enable it");
    return;
  }
  if (status == ROUTE_NOT_FOUND && is_hooks_path(req) && app->hooks) {
    serve_hook(app, req);
    return;
  }
  dispatch_route(app, req, status);
}

static void dispatch_route(Api *app, HttpRequest *req, RouteStatus status) {
  switch (status) {
    case ROUTE_NOT_FOUND:
      http_respond_error(req, 404, "not_found", "Route %s %.*s was not found",
                         req->method, (int)req->path_len, req->path);
      return;
    case ROUTE_BAD_METHOD:
      http_add_header(req, "Allow", req->match.allow);
      http_respond_error(req, 405, "not_allowed",
                         "Method %s is not allowed here; allowed: %s",
                         req->method, req->match.allow);
      return;
    case ROUTE_BAD_PATH:
      http_respond_error(req, 400, "invalid_data",
                         "The path has a malformed %%-escape");
      return;
    case ROUTE_FOUND:
      break;
  }
  if (req->query &&
      url_parse_pairs(req->query, req->query_len, MAX_PARAMS, &req->params)) {
    http_respond_error(req, 400, "invalid_data",
                       "The query string is malformed or too long");
    return;
  }
  if (!rate_allowed(app, req)) return;
  req->match.route->fn(req, app);
}

json_t *api_json_body(HttpRequest *req) {
  if (req->body_len == 0) return json_object();
  json_error_t error;
  json_t *body =
      json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &error);
  if (!body) {
    http_respond_error(req, 400, "invalid_data",
                       "The body is not valid JSON: %s (at byte %d)",
                       error.text, error.position);
    return NULL;
  }
  if (!json_is_object(body)) {
    json_decref(body);
    http_respond_error(req, 400, "invalid_data",
                       "The body must be a JSON object");
    return NULL;
  }
  return body;
}

bool api_is_form(const HttpRequest *req) {
  const char *type = http_header(req, "content-type");
  if (!type || strncasecmp(type, "application/x-www-form-urlencoded", 33))
    return false;
  /* curl's -d sends JSON labelled as a form: a body that is a JSON object
   * is read as JSON whatever its label says (contract section 5). */
  size_t i = 0;
  while (i < req->body_len && strchr(" \t\r\n", req->body[i])) i++;
  if (i < req->body_len && req->body[i] == '{') {
    json_t *probe = json_loadb(req->body, req->body_len, 0, NULL);
    bool object = json_is_object(probe);
    json_decref(probe);
    if (object) return false;
  }
  return true;
}

void api_fail(HttpRequest *req, int status, const char *message) {
  const char *type = "unexpected_state";
  int code = domain_http_status(status, &type);
  if (message && *message) {
    http_respond_error(req, code, type, "%s", message);
    return;
  }
  switch (status) {
    case RESTOCK_ECOMMIT:
      http_respond_error(req, code, type,
                         "The write could not be committed and nothing of it "
                         "was stored (the server log says why); retry later");
      break;
    case RESTOCK_EUNAVAIL:
      http_respond_error(req, code, type,
                         "The database is unavailable; retry later");
      break;
    default:
      http_respond_error(req, code, type,
                         "The database failed; the server log says why");
  }
}

int api_param_count(const HttpRequest *req, const char *name, long long dflt,
                    long long max, long long *out) {
  const char *s = url_pairs_get(&req->params, name);
  if (!s) {
    *out = dflt;
    return 0;
  }
  if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 12)
    return RESTOCK_EINVAL;
  *out = strtoll(s, NULL, 10);
  return *out <= max ? 0 : RESTOCK_EINVAL;
}

int api_paging(HttpRequest *req, long long *limit, long long *offset) {
  if (api_param_count(req, "limit", 50, 1000, limit)) {
    http_respond_error(req, 400, "invalid_data",
                       "limit must be an integer from 0 to 1000");
    return RESTOCK_EINVAL;
  }
  if (api_param_count(req, "offset", 0, (long long)1 << 40, offset)) {
    http_respond_error(req, 400, "invalid_data",
                       "offset must be a non-negative integer");
    return RESTOCK_EINVAL;
  }
  return 0;
}

static int api_read_fn(StoreTx *tx, ReadCall *c) {
  ApiRead *r = (ApiRead *)c;
  return r->render(tx, r);
}

static void api_read_done(ReadCall *c, int status) {
  ApiRead *r = (ApiRead *)c;
  if (status)
    api_fail(r->req, status, r->message);
  else
    http_respond(r->req, 200, "application/json", r->out.data, r->out.len);
  buf_free(&r->out);
  if (r->free_arg) r->free_arg(r->arg);
  free(r);
}

void api_read(Api *api, HttpRequest *req,
              int (*render)(StoreTx *tx, ApiRead *r), void *arg,
              void (*free_arg)(void *arg)) {
  ApiRead *r = xcalloc(1, sizeof *r);
  r->req = http_defer(req);
  r->render = render;
  r->arg = arg;
  r->free_arg = free_arg;
  r->call.fn = api_read_fn;
  r->call.done = api_read_done;
  domain_read(api->d, &r->call);
}

static json_t *string_or_null(const char *s) {
  return s ? json_string(s) : json_null();
}

json_t *api_variant_json(const Variant *v) {
  return json_pack("{s:s, s:o, s:o, s:o, s:I, s:b, s:b, s:I, s:s, s:s}", "id",
                   v->id, "product_id", string_or_null(v->product_id), "sku",
                   string_or_null(v->sku), "title", string_or_null(v->title),
                   "inventory_quantity", (json_int_t)v->inventory_quantity,
                   "allow_backorder", v->allow_backorder, "manage_inventory",
                   v->manage_inventory, "quantity",
                   (json_int_t)stock_quantity(v), "created_at", v->created_at,
                   "updated_at", v->updated_at);
}

json_t *api_event_json(const EventRow *e) {
  json_t *data = json_loads(e->data ? e->data : "null", JSON_DECODE_ANY, NULL);
  return json_pack("{s:I, s:s, s:o, s:s, s:I, s:o, s:s, s:[]}", "id",
                   (json_int_t)e->id, "name", e->name, "data",
                   data ? data : json_null(), "status", e->status, "attempts",
                   (json_int_t)e->attempts, "last_error",
                   e->last_error ? json_string(e->last_error) : json_null(),
                   "created_at", e->created_at, "deliveries");
}

json_t *api_delivery_json(const DeliveryRow *d) {
  json_t *j =
      json_pack("{s:s, s:s, s:I, s:I, s:o, s:s}", "handler", d->handler,
                "status", d->status, "attempts", (json_int_t)d->attempts,
                "max_attempts", (json_int_t)d->max_attempts, "last_error",
                d->last_error ? json_string(d->last_error) : json_null(),
                "updated_at", d->updated_at);
  if (d->subscriber && *d->subscriber)
    json_object_set_new(j, "subscriber", json_string(d->subscriber));
  return j;
}
