/* The HTTP routes: each parses and validates its request, calls one
 * use-case (subscriptions.h, inventory.h, the outbox's reads), and maps its
 * result onto an answer. A route that needs the database defers its
 * request (http_defer) and answers from the use-case's completion. No route
 * opens a transaction or knows what follows a write. */
#ifndef RESTOCKD_API_H
#define RESTOCKD_API_H

#include <jansson.h>
#include <stdbool.h>

#include "domain.h"
#include "http.h"
#include "ratelimit.h"

/* Serves a request under /hooks/ that no built-in route has: the plugin's
 * own routes (restock.route). `client` is the caller's address. Returns 0
 * when it took the request (and set req->match.route, naming it in the
 * metrics); RESTOCK_ENOTFOUND, or RESTOCK_ENOTALLOWED with the methods the
 * path has in `allow`, when it answered nothing. */
typedef int (*ApiHooksFn)(void *ctx, HttpRequest *req, const char *client,
                          char *allow, size_t allow_len);

typedef struct Api {
  Domain *d;
  uv_loop_t *loop;
  RateLimit *ratelimit; /* subscribe_rate_limit's buckets */
  /* SHA-256 of RESTOCK_ADMIN_TOKEN; admin routes answer 401 without it. */
  bool admin_enabled;
  unsigned char admin_digest[32];
  ApiHooksFn hooks; /* NULL: /hooks/ has no routes */
  void *hooks_ctx;
  RateLimit *login_limit; /* failed console logins; made on first use */
  /* The session cookie and its end (ms) while a route authorised by it
   * runs (its synchronous part); NULL otherwise. */
  const char *session;
  long long session_expires;
} Api;

/* Sets the admin token (NULL or "" disables the admin API). */
void api_set_admin_token(Api *api, const char *token);
/* The HTTP handler of every route; `data` is the Api. */
void api_handle(HttpRequest *req, void *data);
/* Counts and logs each answer (the HttpAnswerHook); `data` is the Api. */
void api_answered(void *data, HttpRequest *req);
/* Counts and logs a request the HTTP layer answered itself. */
void api_rejected(void *data, int status, const char *client);

/* ---- shared by the route files ------------------------------------------ */

/* Parses the request body as a JSON object (an empty body is {}). On failure
 * responds 400 and returns NULL. The caller owns the result. */
json_t *api_json_body(HttpRequest *req);
/* True when the body is a form (application/x-www-form-urlencoded) and not
 * a JSON object: curl's -d labels JSON as a form. */
bool api_is_form(const HttpRequest *req);
/* Answers a use-case's failure: its HTTP status and error type, with
 * `message` (or a sentence for a storage failure). */
void api_fail(HttpRequest *req, int status, const char *message);
/* The variant as the API shows it, quantity included. */
json_t *api_variant_json(const Variant *v);
/* An event of the outbox as the admin API lists it (GET /admin/events, a
 * variant's events), with an empty "deliveries" array for
 * api_delivery_json's entries. */
json_t *api_event_json(const EventRow *e);
/* One delivery of such an event. */
json_t *api_delivery_json(const DeliveryRow *d);
/* Parses a non-negative decimal query parameter no greater than `max`.
 * Returns 0 (with *out, or `dflt` when absent) or RESTOCK_EINVAL. */
int api_param_count(const HttpRequest *req, const char *name, long long dflt,
                    long long max, long long *out);
/* Reads limit (default 50, at most 1000) and offset. Returns 0, or
 * RESTOCK_EINVAL having answered 400. */
int api_paging(HttpRequest *req, long long *limit, long long *offset);

/* A read answered later with the JSON text its function renders on the
 * storage side, in `out`. */
typedef struct ApiRead ApiRead;
struct ApiRead {
  ReadCall call;
  HttpRequest *req;
  Buf out;
  char message[400]; /* why, for a status other than 0 */
  int (*render)(StoreTx *tx, ApiRead *r);
  void *arg;
  void (*free_arg)(void *arg);
};
/* Defers `req` and runs `render` off the loop; answers 200 with `out` as
 * JSON, or the failure. `arg` is freed with `free_arg` (if not NULL). */
void api_read(Api *api, HttpRequest *req,
              int (*render)(StoreTx *tx, ApiRead *r), void *arg,
              void (*free_arg)(void *arg));

/* The client's address: the peer's, or behind a trusted proxy (the
 * trust_proxy option) the last X-Forwarded-For entry. */
void api_client_address(Api *api, const HttpRequest *req, char *out,
                        size_t len);

/* True when `token` is the admin token (compared as digests, in constant
 * time). */
bool api_admin_token_ok(const Api *api, const char *token);

/* Routes of api_console.c (the web pages). */
void api_widget(HttpRequest *req, void *api);
void api_console_page(HttpRequest *req, void *api);
void api_console_script(HttpRequest *req, void *api);
void api_console_style(HttpRequest *req, void *api);
void api_console_login(HttpRequest *req, void *api);
void api_console_logout(HttpRequest *req, void *api);
void api_console_session(HttpRequest *req, void *api);
void api_admin_demand(HttpRequest *req, void *api);
/* GET /admin/events?variant_id=: that variant's restocked events. */
void api_admin_events_variant(HttpRequest *req, void *api,
                              const char *variant_id, const char *status,
                              long long limit, long long offset);
/* Clears the session cookie in the answer. */
void api_console_clear_cookie(Api *api, HttpRequest *req);
/* True when a trusted proxy says the request came over HTTPS. */
bool api_console_https(Api *api, const HttpRequest *req);

/* Routes of api_store.c. */
void api_subscribe(HttpRequest *req, void *api);
void api_unsubscribe(HttpRequest *req, void *api);
void api_confirm(HttpRequest *req, void *api);
void api_mine(HttpRequest *req, void *api);

/* Route of api_export.c. */
void api_admin_export(HttpRequest *req, void *api);

/* Routes of api_admin.c. */
void api_admin_variants_post(HttpRequest *req, void *api);
void api_admin_variants_get(HttpRequest *req, void *api);
void api_admin_variant_get(HttpRequest *req, void *api);
void api_admin_variant_post(HttpRequest *req, void *api);
void api_admin_variant_delete(HttpRequest *req, void *api);
void api_admin_product_variant_post(HttpRequest *req, void *api);
void api_admin_notifications_get(HttpRequest *req, void *api);
void api_admin_notifications_delete(HttpRequest *req, void *api);
void api_admin_events_get(HttpRequest *req, void *api);
void api_admin_event_retry(HttpRequest *req, void *api);
void api_admin_nodes_get(HttpRequest *req, void *api);

/* Routes of api_reports.c. */
void api_admin_conversions_get(HttpRequest *req, void *api);

/* Routes of api_stock.c. */
void api_admin_locations_post(HttpRequest *req, void *api);
void api_admin_locations_get(HttpRequest *req, void *api);
void api_admin_location_delete(HttpRequest *req, void *api);
void api_admin_channels_post(HttpRequest *req, void *api);
void api_admin_channels_get(HttpRequest *req, void *api);
void api_admin_channel_delete(HttpRequest *req, void *api);
void api_admin_keys_post(HttpRequest *req, void *api);
void api_admin_keys_get(HttpRequest *req, void *api);
void api_admin_key_delete(HttpRequest *req, void *api);
void api_admin_levels_post(HttpRequest *req, void *api);
void api_admin_levels_get(HttpRequest *req, void *api);
void api_admin_batch_post(HttpRequest *req, void *api);

#endif
