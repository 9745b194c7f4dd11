/* A stand-in application for the HTTP fuzz target: a route table like the
 * server's, matched by router.c, with query strings and form bodies parsed
 * by url.c, and handlers that answer JSON describing the request, 204, or
 * later (http_defer, answered from the loop's next turn). */
#include "http_handler.h"

#include <string.h>

#include "fuzz.h"
#include "router.h"
#include "url.h"

#define MAX_PARAMS 64

typedef struct {
  uv_idle_t idle; /* answers the deferred requests */
  HttpRequest *pending[8];
  size_t npending;
} App;

static App app;

/* A JSON string of any bytes: the bytes when they are UTF-8, else null. */
static json_t *string_or_null(const char *s, size_t len) {
  json_t *j = json_stringn(s, len);
  return j ? j : json_null();
}

static json_t *pairs_json(const KeyValueList *l) {
  json_t *a = json_array();
  for (size_t i = 0; i < l->count; i++)
    json_array_append_new(
        a,
        json_pack(
            "[o, o]", string_or_null(l->items[i].key, strlen(l->items[i].key)),
            string_or_null(l->items[i].value, strlen(l->items[i].value))));
  return a;
}

/* Echoes the request: route, path parameters, query and form pairs, the
 * headers and the body (parsed as JSON when it is some). */
static void echo(HttpRequest *req, void *data) {
  json_t *o = json_object();
  json_object_set_new(o, "route", json_string(req->match.route->pattern));
  json_t *params = json_object();
  for (size_t i = 0; i < req->match.nparams; i++) {
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)req->match.name_lens[i],
             req->match.names[i]);
    json_object_set_new(
        params, name,
        string_or_null(req->match.values[i], strlen(req->match.values[i])));
    FUZZ_CHECK(router_param(&req->match, name) != NULL);
  }
  json_object_set_new(o, "params", params);
  json_object_set_new(o, "query", pairs_json(&req->params));
  json_t *headers = json_array();
  for (size_t i = 0; i < req->nheaders; i++)
    json_array_append_new(
        headers, json_pack("[o, o]",
                           string_or_null(req->headers[i].name,
                                          strlen(req->headers[i].name)),
                           string_or_null(req->headers[i].value,
                                          strlen(req->headers[i].value))));
  json_object_set_new(o, "headers", headers);
  const char *type = http_header(req, "content-type");
  if (type && strncmp(type, "application/x-www-form-urlencoded", 33) == 0) {
    KeyValueList form = {0};
    if (url_parse_pairs(req->body, req->body_len, MAX_PARAMS, &form) == 0) {
      json_object_set_new(o, "form", pairs_json(&form));
      url_pairs_free(&form);
    }
  } else if (req->body_len > 0) {
    json_t *body = json_loadb(req->body, req->body_len, JSON_DECODE_ANY, NULL);
    json_object_set_new(o, "json", body ? body : json_null());
  }
  json_object_set_new(o, "body_bytes", json_integer((json_int_t)req->body_len));
  http_add_header(req, "X-Fuzz", "echo");
  http_respond_json(req, 200, o);
}

static void no_content(HttpRequest *req, void *data) {
  http_respond(req, 204, "text/plain", "", 0);
}

static void on_idle(uv_idle_t *idle) {
  App *a = idle->data;
  size_t n = a->npending;
  a->npending = 0;
  uv_idle_stop(idle);
  for (size_t i = 0; i < n; i++) {
    HttpRequest *d = a->pending[i];
    FUZZ_CHECK(d->deferred);
    http_respond_error(d, 200, "deferred", "answered later: %s", d->path);
  }
}

static void later(HttpRequest *req, void *data) {
  App *a = data;
  if (a->npending == sizeof a->pending / sizeof *a->pending) {
    http_respond_error(req, 503, "unexpected_state", "busy");
    return;
  }
  a->pending[a->npending++] = http_defer(req);
  uv_idle_start(&a->idle, on_idle);
}

static const Route routes[] = {
    {"GET", "/health", echo},
    {"POST", "/restock-notifications/variants/{variant_id}", echo},
    {"OPTIONS", "/restock-notifications/variants/{variant_id}", no_content},
    {"GET", "/restock-notifications/unsubscribe", echo},
    {"POST", "/restock-notifications/unsubscribe", echo},
    {"GET", "/admin/variants/{id}", echo},
    {"POST", "/admin/products/{product_id}/variants/{id}", echo},
    {"DELETE", "/admin/restock-notifications", echo},
    {"GET", "/later/{n}", later},
    {"POST", "/later/{n}", later},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static void dispatch(HttpRequest *req, void *data) {
  RouteStatus st = router_match(routes, NROUTES, req->method, req->path,
                                req->path_len, &req->match);
  if (req->query &&
      url_parse_pairs(req->query, req->query_len, MAX_PARAMS, &req->params)) {
    http_respond_error(req, 400, "invalid_data", "Malformed query string");
    return;
  }
  switch (st) {
    case ROUTE_NOT_FOUND:
      http_respond_error(req, 404, "not_found", "Route %s %.*s was not found",
                         req->method, (int)req->path_len, req->path);
      return;
    case ROUTE_BAD_METHOD:
      http_add_header(req, "Allow", req->match.allow);
      http_respond_error(req, 405, "not_allowed", "Method %s is not allowed",
                         req->method);
      return;
    case ROUTE_BAD_PATH:
      http_respond_error(req, 400, "invalid_data", "Malformed path");
      return;
    case ROUTE_FOUND:
      req->match.route->fn(req, data);
      return;
  }
}

void fuzz_http_setup(uv_loop_t *loop, HttpHandler *handler, void **data) {
  uv_idle_init(loop, &app.idle);
  app.idle.data = &app;
  *handler = dispatch;
  *data = &app;
}

void fuzz_http_started(HttpServer *srv, void *data) {}

bool fuzz_http_busy(void *data) {
  const App *a = data;
  return a->npending > 0;
}
