/* The web pages' routes (contract section 8): the storefront widget, the
 * console's files, its login, logout and session, and the reads only the
 * console needs (the demand report, a variant's restocked events). The
 * dispatcher (api.c) decides who may call what: the widget, the console's
 * files and the login are public; everything else under /admin takes the
 * bearer token or a session cookie, and a state-changing request on the
 * cookie alone must also show it comes from the console (api.c,
 * console_authorize). */
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "engine.h"
#include "json_text.h"
#include "pages.h"
#include "sessions.h"
#include "url.h"
#include "web.h"
#include "xmalloc.h"

/* ---- files ----------------------------------------------------------------
 */

static void serve(HttpRequest *req, const char *name, WebAudience audience) {
  const WebAsset *a = web_asset(name);
  if (!a) {
    http_respond_error(req, 404, "not_found", "%s is not built in", name);
    return;
  }
  web_serve(req, a, audience);
}

void api_widget(HttpRequest *req, void *api) {
  serve(req, "widget.js", WEB_STOREFRONT);
}

void api_console_page(HttpRequest *req, void *api) {
  serve(req, "console.html", WEB_CONSOLE);
}

void api_console_script(HttpRequest *req, void *api) {
  serve(req, "console.js", WEB_CONSOLE);
}

void api_console_style(HttpRequest *req, void *api) {
  serve(req, "console.css", WEB_CONSOLE);
}

/* ---- the session cookie ----------------------------------------------------
 */

/* True when the request came over HTTPS as a trusted proxy tells it: the
 * last entry of X-Forwarded-Proto (the one the proxy added) is https. */
static bool forwarded_https(Api *api, const HttpRequest *req) {
  if (!api->d->config->options.trust_proxy) return false;
  const char *proto = NULL;
  for (size_t i = 0; i < req->nheaders; i++)
    if (strcmp(req->headers[i].name, "x-forwarded-proto") == 0)
      proto = req->headers[i].value;
  if (!proto) return false;
  const char *last = strrchr(proto, ',');
  last = last ? last + 1 : proto;
  while (*last == ' ') last++;
  return strncasecmp(last, "https", 5) == 0 &&
         (last[5] == '\0' || last[5] == ' ');
}

bool api_console_https(Api *api, const HttpRequest *req) {
  return forwarded_https(api, req);
}

/* Sets the cookie to `value` for `max_age` seconds (0 clears it). */
static void set_cookie(Api *api, HttpRequest *req, const char *value,
                       long long max_age) {
  char line[256];
  snprintf(line, sizeof line,
           SESSION_COOKIE
           "=%s; Path=/admin; Max-Age=%lld; HttpOnly; "
           "SameSite=Strict%s",
           value, max_age, forwarded_https(api, req) ? "; Secure" : "");
  http_add_header(req, "Set-Cookie", line);
}

void api_console_clear_cookie(Api *api, HttpRequest *req) {
  set_cookie(api, req, "", 0);
}

static json_t *session_json(Api *api, const char *cookie, long long expires) {
  char csrf[SESSION_CSRF_LEN + 1], at[ISOTIME_LEN];
  sessions_csrf(api->d, cookie, csrf);
  isotime_format(expires, at);
  return json_pack("{s:s, s:s}", "csrf_token", csrf, "expires_at", at);
}

/* ---- login ----------------------------------------------------------------
 */

/* Failed logins a client address may make in a minute. */
#define LOGIN_FAILURES_PER_MINUTE 10

typedef struct {
  SessionCall call;
  HttpRequest *req;
  Api *api;
  bool html; /* a browser's plain form: answer with a redirect */
} LoginReq;

static void logged_in(SessionCall *c, int status) {
  LoginReq *r = c->arg;
  if (status) {
    api_fail(r->req, status, NULL);
  } else {
    set_cookie(r->api, r->req, c->cookie, SESSION_TTL_MS / 1000);
    http_add_header(r->req, "Cache-Control", "no-store");
    if (r->html) {
      http_add_header(r->req, "Location", "/admin/");
      http_respond(r->req, 303, "text/plain; charset=utf-8", "/admin/\n", 8);
    } else {
      http_respond_json(r->req, 200,
                        session_json(r->api, c->cookie, c->expires_at));
    }
  }
  OPENSSL_cleanse(c->cookie, sizeof c->cookie);
  free(r);
}

/* The token of the body: a form's or a JSON object's `token` field, copied
 * into `out` (at most `len` - 1 bytes). Returns 0, or -1 having answered. */
static int login_token(HttpRequest *req, char *out, size_t len) {
  out[0] = '\0';
  if (api_is_form(req)) {
    KeyValueList form = {0};
    if (url_parse_pairs(req->body, req->body_len, 16, &form)) {
      http_respond_error(req, 400, "invalid_data",
                         "The form body is malformed");
      return -1;
    }
    const char *t = url_pairs_get(&form, "token");
    snprintf(out, len, "%s", t ? t : "");
    url_pairs_free(&form);
    return 0;
  }
  json_t *body = api_json_body(req);
  if (!body) return -1;
  json_t *t = json_object_get(body, "token");
  if (t && !json_is_string(t)) {
    json_decref(body);
    http_respond_error(req, 400, "invalid_data", "token must be a string");
    return -1;
  }
  snprintf(out, len, "%s", t ? json_string_value(t) : "");
  json_decref(body);
  return 0;
}

/* POST /admin/login: the admin token in, a session cookie out. */
void api_console_login(HttpRequest *req, void *data) {
  Api *api = data;
  if (!api->admin_enabled) {
    http_respond_error(req, 401, "unauthorized",
                       "The admin API is disabled: set RESTOCK_ADMIN_TOKEN "
                       "to enable it");
    return;
  }
  if (!api->login_limit) api->login_limit = ratelimit_new();
  char client[64];
  api_client_address(api, req, client, sizeof client);
  long long retry = 0;
  uint64_t now = uv_now(api->loop);
  /* Refused before the token is even looked at: a client over its failures
   * learns nothing more from trying. */
  if (!ratelimit_check(api->login_limit, client, LOGIN_FAILURES_PER_MINUTE, now,
                       &retry)) {
    char value[32];
    snprintf(value, sizeof value, "%lld", retry);
    http_add_header(req, "Retry-After", value);
    http_respond_error(req, 429, "too_many_requests",
                       "Too many failed logins from %s; retry in %lld s",
                       client, retry);
    return;
  }
  /* Longer tokens than this are wrong whatever they hold, and are hashed
   * as cut: the comparison below is of digests, in constant time. */
  char token[1024];
  if (login_token(req, token, sizeof token)) return;
  if (!api_admin_token_ok(api, token)) {
    OPENSSL_cleanse(token, sizeof token);
    ratelimit_take(api->login_limit, client, LOGIN_FAILURES_PER_MINUTE, now,
                   &retry);
    http_respond_error(req, 401, "unauthorized", "The admin token is wrong");
    return;
  }
  OPENSSL_cleanse(token, sizeof token);
  LoginReq *r = xcalloc(1, sizeof *r);
  r->api = api;
  r->html = api_is_form(req) && pages_wanted(req);
  r->call.done = logged_in;
  r->call.arg = r;
  r->req = http_defer(req);
  sessions_create(api->d, &r->call);
}

/* ---- logout and session
 * -------------------------------------------------------- */

typedef struct {
  SessionCall call;
  HttpRequest *req;
  Api *api;
} LogoutReq;

static void logged_out(SessionCall *c, int status) {
  LogoutReq *r = c->arg;
  if (status) {
    api_fail(r->req, status, NULL);
  } else {
    api_console_clear_cookie(r->api, r->req);
    http_respond_json(r->req, 200, json_pack("{s:b}", "logged_out", 1));
  }
  free(r);
}

/* POST /admin/logout: ends the session of the cookie (any node's). */
void api_console_logout(HttpRequest *req, void *data) {
  Api *api = data;
  char cookie[SESSION_COOKIE_LEN + 1];
  if (!sessions_cookie(http_header(req, "cookie"), cookie)) {
    api_console_clear_cookie(api, req);
    http_respond_json(req, 200, json_pack("{s:b}", "logged_out", 1));
    return;
  }
  LogoutReq *r = xcalloc(1, sizeof *r);
  r->api = api;
  memcpy(r->call.cookie, cookie, sizeof cookie);
  r->call.done = logged_out;
  r->call.arg = r;
  r->req = http_defer(req);
  sessions_end(api->d, &r->call);
}

/* GET /admin/session: the CSRF token of the session the cookie names. */
void api_console_session(HttpRequest *req, void *data) {
  Api *api = data;
  if (!api->session) {
    http_respond_error(req, 401, "unauthorized",
                       "No console session: log in at POST /admin/login");
    return;
  }
  http_add_header(req, "Cache-Control", "no-store");
  http_respond_json(req, 200,
                    session_json(api, api->session, api->session_expires));
}

/* ---- the demand report ------------------------------------------------------
 */

typedef struct {
  char channel[DOMAIN_MAX_ID + 1];
  bool scoped;
  long long limit, offset;
  json_t *rows;
} DemandList;

static int demand_row(StoreTx *tx, void *ctx, const DemandRow *row) {
  DemandList *l = ctx;
  const Variant *v = row->variant;
  long long quantity = 0;
  int rc =
      engine_scope_quantity(tx, v, l->scoped ? l->channel : NULL, &quantity);
  if (rc == RESTOCK_ERANGE) rc = 0, quantity = v->inventory_quantity;
  if (rc) return rc;
  json_t *j = json_pack(
      "{s:s, s:o, s:o, s:I, s:I, s:o, s:I, s:I}", "variant_id", v->id, "title",
      v->title ? json_string(v->title) : json_null(), "sku",
      v->sku ? json_string(v->sku) : json_null(), "quantity",
      (json_int_t)quantity, "waiting", (json_int_t)row->waiting,
      "oldest_waiting_since",
      row->oldest_waiting_since ? json_string(row->oldest_waiting_since)
                                : json_null(),
      "notified", (json_int_t)row->notified, "converted",
      (json_int_t)row->converted);
  json_array_append_new(l->rows, j);
  return 0;
}

static int render_demand(StoreTx *tx, ApiRead *r) {
  DemandList *l = r->arg;
  long long count = 0;
  l->rows = json_array();
  int rc = store_demand_list(tx, l->scoped ? l->channel : NULL, l->limit,
                             l->offset, demand_row, l, &count);
  if (rc == 0) {
    json_t *j = json_pack("{s:O, s:I, s:I, s:I}", "variants", l->rows, "count",
                          (json_int_t)count, "limit", (json_int_t)l->limit,
                          "offset", (json_int_t)l->offset);
    json_text_append(&r->out, j);
    json_decref(j);
  }
  json_decref(l->rows);
  l->rows = NULL;
  return rc;
}

/* GET /admin/reports/demand?sales_channel_id=&limit=&offset= */
void api_admin_demand(HttpRequest *req, void *data) {
  DemandList *l = xcalloc(1, sizeof *l);
  if (api_paging(req, &l->limit, &l->offset)) {
    free(l);
    return;
  }
  const char *ch = url_pairs_get(&req->params, "sales_channel_id");
  if (ch && *ch) {
    if (!domain_valid_id(ch)) {
      http_respond_error(req, 400, "invalid_data",
                         "sales_channel_id must be 1 to %d characters of "
                         "text",
                         DOMAIN_MAX_ID);
      free(l);
      return;
    }
    snprintf(l->channel, sizeof l->channel, "%s", ch);
    l->scoped = true;
  }
  api_read(data, req, render_demand, l, free);
}

/* ---- a variant's restocked events -------------------------------------------
 */

typedef struct {
  char variant_id[DOMAIN_MAX_ID + 1];
  const char *status;
  long long limit, offset;
  json_t *rows;
  json_t *current;
} VariantEvents;

static int variant_event_row(void *ctx, const EventRow *e) {
  VariantEvents *l = ctx;
  l->current = api_event_json(e);
  json_array_append_new(l->rows, l->current);
  return 0;
}

static int variant_delivery_row(void *ctx, const DeliveryRow *d) {
  VariantEvents *l = ctx;
  json_array_append_new(json_object_get(l->current, "deliveries"),
                        api_delivery_json(d));
  return 0;
}

static int render_variant_events(StoreTx *tx, ApiRead *r) {
  VariantEvents *l = r->arg;
  long long count = 0;
  l->rows = json_array();
  EventVisitor v = {variant_event_row, variant_delivery_row, l};
  int rc = store_event_list_variant(tx, l->variant_id, l->status, l->limit,
                                    l->offset, &v, &count);
  if (rc == 0) {
    json_t *j = json_pack("{s:O, s:I, s:I, s:I}", "events", l->rows, "count",
                          (json_int_t)count, "limit", (json_int_t)l->limit,
                          "offset", (json_int_t)l->offset);
    json_text_append(&r->out, j);
    json_decref(j);
  }
  json_decref(l->rows);
  l->rows = NULL;
  return rc;
}

void api_admin_events_variant(HttpRequest *req, void *data,
                              const char *variant_id, const char *status,
                              long long limit, long long offset) {
  VariantEvents *l = xcalloc(1, sizeof *l);
  l->limit = limit;
  l->offset = offset;
  l->status = status;
  if (domain_valid_id(variant_id))
    snprintf(l->variant_id, sizeof l->variant_id, "%s", variant_id);
  else
    snprintf(l->variant_id, sizeof l->variant_id, "\x01"); /* none such */
  api_read(data, req, render_variant_events, l, free);
}
