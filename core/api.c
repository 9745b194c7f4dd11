/* The route table, the dispatcher, and helpers shared by the routes. */
#include "api.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "router.h"
#include "stock.h"
#include "url.h"
#include "xmalloc.h"

static void api_health(HttpRequest *req, void *app) {
  http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* GET /metrics: Prometheus text format. No auth: the bind address is the
 * guard. */
static void api_metrics(HttpRequest *req, void *data) {
  App *app = data;
  MetricsGauges g = {0};
  if (store_subscription_count(app->store, &g.active_subscriptions) ||
      store_check_count(app->store, &g.pending_checks) ||
      store_delivery_pending_count(app->store, &g.pending_deliveries)) {
    api_store_failed(req);
    return;
  }
  Buf out = {0};
  metrics_render(&out, &g);
  http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data,
               out.len);
  buf_free(&out);
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
    {"POST", "/admin/variants", api_admin_variants_post},
    {"GET", "/admin/variants/{id}", api_admin_variant_get},
    {"POST", "/admin/variants/{id}", api_admin_variant_post},
    {"POST", "/admin/products/{product_id}/variants/{id}",
     api_admin_product_variant_post},
    {"GET", "/admin/restock-notifications", api_admin_notifications_get},
    {"DELETE", "/admin/restock-notifications", api_admin_notifications_delete},
    {"POST", "/admin/stock-locations", api_admin_locations_post},
    {"POST", "/admin/sales-channels", api_admin_channels_post},
    {"POST", "/admin/inventory-levels", api_admin_levels_post},
    {"POST", "/admin/publishable-api-keys", api_admin_keys_post},
    {"POST", "/admin/inventory/batch", api_admin_batch_post},
    {"GET", "/admin/events", api_admin_events_get},
    {"POST", "/admin/events/{id}/retry", api_admin_event_retry},
};
#define NROUTES (sizeof routes / sizeof routes[0])

/* Most query parameters a request may carry. */
#define MAX_PARAMS 64

void api_set_admin_token(App *app, const char *token) {
  app->admin_enabled = token && *token;
  if (app->admin_enabled)
    SHA256((const unsigned char *)token, strlen(token), app->admin_digest);
}

/* Compares the bearer token with the configured one in constant time: both
 * are hashed first, so not even their lengths leak through timing. */
static bool admin_authorized(const App *app, const HttpRequest *req) {
  if (!app->admin_enabled) return false;
  const char *auth = http_header(req, "authorization");
  if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) return false;
  const char *token = auth + 7;
  while (*token == ' ') token++;
  unsigned char digest[32];
  SHA256((const unsigned char *)token, strlen(token), digest);
  return CRYPTO_memcmp(digest, app->admin_digest, sizeof digest) == 0;
}

static bool is_admin_path(const HttpRequest *req) {
  return req->path_len >= 6 && memcmp(req->path, "/admin", 6) == 0 &&
         (req->path_len == 6 || req->path[6] == '/');
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
static void add_cors(App *app, HttpRequest *req) {
  const char *list = lua_host_options(app->lua)->store_cors;
  if (!list || !is_store_path(req)) return;
  http_add_header(req, "Vary", "Origin");
  const char *origin = http_header(req, "origin");
  if (!origin || !origin_allowed(list, origin)) return;
  http_add_header(req, "Access-Control-Allow-Origin", origin);
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
static void client_address(App *app, const HttpRequest *req, char *out,
                           size_t len) {
  const char *xff = NULL;
  if (lua_host_options(app->lua)->trust_proxy)
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
static bool rate_allowed(App *app, HttpRequest *req) {
  long long limit = lua_host_options(app->lua)->subscribe_rate_limit;
  if (limit <= 0 || req->match.route->fn != api_subscribe) return true;
  char client[64];
  client_address(app, req, client, sizeof client);
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

static void dispatch(App *app, HttpRequest *req);

void api_rejected(void *data, int status, const char *client) {
  metrics_http("malformed", status, 0);
  log_access("-", "malformed", "-", status, 0, client);
}

void api_handle(HttpRequest *req, void *data) { dispatch(data, req); }

void api_answered(void *data, HttpRequest *req) {
  App *app = data;
  const char *route =
      req->match.route ? req->match.route->pattern : "unmatched";
  double seconds = (double)(uv_hrtime() - req->start_ns) / 1e9;
  metrics_http(route, req->status, seconds);
  char path[256];
  snprintf(path, sizeof path, "%.*s",
           (int)(req->path_len < 255 ? req->path_len : 255), req->path);
  char client[64];
  client_address(app, req, client, sizeof client);
  log_access(req->method, route, path, req->status, seconds * 1000, client);
}

static void dispatch(App *app, HttpRequest *req) {
  add_cors(app, req);
  /* Matched first so that metrics name the route of a 401 too; the token is
   * still checked before anything is answered about an admin path. */
  RouteStatus status = router_match(routes, NROUTES, req->method, req->path,
                                    req->path_len, &req->match);
  if (is_admin_path(req) && !admin_authorized(app, req)) {
    http_add_header(req, "WWW-Authenticate", "Bearer");
    http_respond_error(req, 401, "unauthorized",
                       app->admin_enabled ? "A valid admin token is required"
                                          : "The admin API is disabled: set "
                                            "RESTOCK_ADMIN_TOKEN to enable it");
    return;
  }
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

bool api_valid_id(const char *s) {
  size_t len = strlen(s);
  if (len == 0 || len > API_MAX_ID) return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) return false;
  }
  /* jansson refuses strings that are not UTF-8. */
  json_t *probe = json_string(s);
  json_decref(probe);
  return probe != NULL;
}

void api_after_commit(App *app) {
  engine_rearm(app->engine);
  outbox_kick(app->outbox);
}

typedef struct {
  uv_work_t work;
  App *app;
  HttpRequest *req;
  ApiReadFn fn;
  void *arg;
  json_t *out;
  int rc;
} ReadJob;

/* On the thread pool. */
static void read_work(uv_work_t *w) {
  ReadJob *j = w->data;
  App *app = j->app;
  uv_mutex_lock(&app->reader_lock);
  if (!app->reader) {
    char *err = NULL;
    if (store_open_reader(store_path(app->store), &app->reader, &err)) {
      log_error("%s", err);
      free(err);
    }
  }
  j->rc = app->reader ? j->fn(app->reader, j->arg, &j->out) : STORE_ERROR;
  uv_mutex_unlock(&app->reader_lock);
}

/* Back on the loop. */
static void read_done(uv_work_t *w, int status) {
  ReadJob *j = w->data;
  if (status == 0 && j->rc == 0)
    http_respond_json(j->req, 200, j->out);
  else {
    json_decref(j->out);
    api_store_failed(j->req);
  }
  free(j->arg);
  free(j);
}

void api_read_async(App *app, HttpRequest *req, ApiReadFn fn, void *arg) {
  ReadJob *j = xcalloc(1, sizeof *j);
  j->app = app;
  j->fn = fn;
  j->arg = arg;
  j->work.data = j;
  j->req = http_defer(req);
  /* uv_queue_work fails only for a missing callback. */
  if (uv_queue_work(app->loop, &j->work, read_work, read_done) != 0) {
    j->rc = STORE_ERROR;
    read_done(&j->work, 0);
  }
}

void api_store_failed(HttpRequest *req) {
  http_respond_error(req, 500, "unexpected_state",
                     "The database failed; the server log says why");
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
