/* What the route files share: request helpers and the route handlers. */
#ifndef RESTOCKD_API_H
#define RESTOCKD_API_H

#include <jansson.h>
#include <stdbool.h>

#include "app.h"
#include "http.h"
#include "store.h"

#define API_MAX_ID 255

/* Parses the request body as a JSON object (an empty body is {}). On failure
 * responds 400 and returns NULL. The caller owns the result. */
json_t *api_json_body(HttpRequest *req);
/* True when `s` is a usable identifier: 1 to API_MAX_ID bytes of UTF-8
 * without control characters. */
bool api_valid_id(const char *s);
/* After a commit that may have scheduled restock checks and written events:
 * rearms the check timer and wakes the outbox. */
void api_after_commit(App *app);
/* Responds 500 for a storage failure (already logged). */
void api_store_failed(HttpRequest *req);
/* A read that can take long (a count that walks a table): on the thread
 * pool, with App.reader. Fills *out with the answer's body, or returns
 * STORE_ERROR. */
typedef int (*ApiReadFn)(Store *reader, void *arg, json_t **out);
/* Answers `req` later with 200 and what `fn` makes of `arg` (or 500), run
 * off the loop; `arg` is freed with free() after. The request's params stay
 * readable until then; copy anything else into `arg`. */
void api_read_async(App *app, HttpRequest *req, ApiReadFn fn, void *arg);
/* The variant as the API shows it, quantity included. */
json_t *api_variant_json(const Variant *v);

/* Routes of api_store.c. */
void api_subscribe(HttpRequest *req, void *app);
void api_unsubscribe(HttpRequest *req, void *app);

/* Routes of api_admin.c. */
void api_admin_variants_post(HttpRequest *req, void *app);
void api_admin_variant_get(HttpRequest *req, void *app);
void api_admin_variant_post(HttpRequest *req, void *app);
void api_admin_product_variant_post(HttpRequest *req, void *app);
void api_admin_notifications_get(HttpRequest *req, void *app);
void api_admin_notifications_delete(HttpRequest *req, void *app);
void api_admin_events_get(HttpRequest *req, void *app);
void api_admin_event_retry(HttpRequest *req, void *app);

/* Routes of api_stock.c. */
void api_admin_locations_post(HttpRequest *req, void *app);
void api_admin_channels_post(HttpRequest *req, void *app);
void api_admin_keys_post(HttpRequest *req, void *app);
void api_admin_levels_post(HttpRequest *req, void *app);
void api_admin_batch_post(HttpRequest *req, void *app);

#endif
