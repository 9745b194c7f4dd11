/* The storefront routes: subscribing to a sold-out variant. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "email.h"
#include "engine.h"
#include "outbox.h"
#include "stock.h"
#include "token.h"
#include "url.h"

/* The two fields of a subscribe request, from either body encoding. Strings
 * point into `form` or `json`, which own them. */
typedef struct {
  KeyValueList form;
  json_t *json;
  const char *email;
  const char *sales_channel_id;
} SubscribeBody;

/* True when the request's body is a form (a plain HTML form's POST). */
static bool is_form(const HttpRequest *req) {
  const char *type = http_header(req, "content-type");
  return type &&
         strncasecmp(type, "application/x-www-form-urlencoded", 33) == 0;
}

/* Reads the body. On failure responds 400 and returns -1. */
static int read_body(HttpRequest *req, SubscribeBody *b) {
  if (is_form(req)) {
    if (url_parse_pairs(req->body, req->body_len, 64, &b->form)) {
      http_respond_error(req, 400, "invalid_data",
                         "The form body is malformed");
      return -1;
    }
    b->email = url_pairs_get(&b->form, "email");
    b->sales_channel_id = url_pairs_get(&b->form, "sales_channel_id");
    if (b->sales_channel_id && !*b->sales_channel_id)
      b->sales_channel_id = NULL;
    return 0;
  }
  b->json = api_json_body(req);
  if (!b->json) return -1;
  json_t *email = json_object_get(b->json, "email");
  json_t *channel = json_object_get(b->json, "sales_channel_id");
  if (email && !json_is_string(email)) {
    http_respond_error(req, 400, "invalid_data", "email must be a string");
    return -1;
  }
  if (channel && !json_is_null(channel) && !json_is_string(channel)) {
    http_respond_error(req, 400, "invalid_data",
                       "sales_channel_id must be a string");
    return -1;
  }
  b->email = email ? json_string_value(email) : NULL;
  b->sales_channel_id =
      json_is_string(channel) ? json_string_value(channel) : NULL;
  return 0;
}

/* Writes restock-notification.subscribed, with the token that unsubscribes,
 * inside the caller's transaction. */
static int emit_subscribed(App *app, long long subscription,
                           long long linked_event, const char *variant_id,
                           const char *channel, const char *email) {
  char *token =
      token_make(app->token_key, variant_id, channel ? channel : "", email);
  json_t *data = json_pack("{s:s, s:s, s:s}", "variant_id", variant_id, "email",
                           email, "unsubscribe_token", token);
  if (channel)
    json_object_set_new(data, "sales_channel_id", json_string(channel));
  long long event_id = 0;
  int rc =
      outbox_write_id(app, "restock-notification.subscribed", data, &event_id);
  if (rc == 0 && event_id != linked_event)
    rc = store_subscription_set_event(app->store, subscription, event_id);
  json_decref(data);
  free(token);
  return rc;
}

/* GET or POST /restock-notifications/unsubscribe?token=T (POST may carry
 * the token in a JSON or form body instead). */
void api_unsubscribe(HttpRequest *req, void *data) {
  App *app = data;
  const char *token = url_pairs_get(&req->params, "token");
  KeyValueList form = {0};
  json_t *body = NULL;
  if (!token && strcmp(req->method, "POST") == 0 && req->body_len > 0) {
    if (is_form(req)) {
      if (url_parse_pairs(req->body, req->body_len, 64, &form) == 0)
        token = url_pairs_get(&form, "token");
    } else if ((body = api_json_body(req)) == NULL) {
      return;
    } else if (json_is_string(json_object_get(body, "token"))) {
      token = json_string_value(json_object_get(body, "token"));
    }
  }
  char *variant = NULL, *channel = NULL, *email = NULL;
  bool removed = false;
  if (!token) {
    http_respond_error(req, 400, "invalid_data", "token is required");
  } else if (token_parse(app->token_key, token, &variant, &channel, &email)) {
    http_respond_error(req, 400, "invalid_data",
                       "The unsubscribe token is not valid");
  } else if (store_begin(app->store) ||
             store_subscription_remove(app->store, variant, channel, email,
                                       &removed) ||
             store_commit(app->store)) {
    store_rollback(app->store);
    api_store_failed(req);
  } else {
    /* Answered the same whether or not the subscription was still there:
     * unsubscribing twice is no error. */
    http_respond_json(req, 200, json_pack("{s:b}", "unsubscribed", 1));
  }
  free(variant);
  free(channel);
  free(email);
  url_pairs_free(&form);
  json_decref(body);
}

/* Works out the subscription's sales channel from the body and the
 * publishable key header, as Medusa does: a key with one channel gives it; a
 * key with several needs the body's channel to be one of them; a channel
 * must exist. Sets *channel (NULL: unscoped; it may point into *keep, which
 * the caller releases). On failure responds 400 or 500 and returns -1. */
static int resolve_channel(HttpRequest *req, App *app, SubscribeBody *body,
                           json_t **keep, const char **channel) {
  const char *key = http_header(req, "x-publishable-api-key");
  const char *wanted = body->sales_channel_id;
  if (key) {
    int rc = store_key_channels(app->store, key, keep);
    if (rc == STORE_NOT_FOUND) {
      http_respond_error(req, 400, "invalid_data",
                         "Publishable API key %s was not found", key);
      return -1;
    }
    if (rc) {
      api_store_failed(req);
      return -1;
    }
    size_t n = json_array_size(*keep);
    if (!wanted) {
      if (n == 1) {
        *channel = json_string_value(json_array_get(*keep, 0));
        return 0;
      }
      http_respond_error(req, 400, "invalid_data",
                         n ? "sales_channel_id is required: publishable API "
                             "key %s covers several sales channels"
                           : "Publishable API key %s has no sales channel",
                         key);
      return -1;
    }
    size_t i;
    json_t *c;
    json_array_foreach(*keep, i, c) {
      if (strcmp(json_string_value(c), wanted) == 0) {
        *channel = wanted;
        return 0;
      }
    }
    http_respond_error(req, 400, "invalid_data",
                       "Sales channel %s is not covered by publishable API "
                       "key %s",
                       wanted, key);
    return -1;
  }
  if (!wanted) return 0;
  bool exists = false;
  if (!api_valid_id(wanted) ||
      (store_channel_exists(app->store, wanted, &exists) == 0 && !exists)) {
    http_respond_error(req, 400, "invalid_data",
                       "Sales channel with id: %s was not found", wanted);
    return -1;
  }
  if (!exists) {
    api_store_failed(req);
    return -1;
  }
  *channel = wanted;
  return 0;
}

/* POST /restock-notifications/variants/{variant_id} */
void api_subscribe(HttpRequest *req, void *data) {
  App *app = data;
  const char *variant_id = router_param(&req->match, "variant_id");
  SubscribeBody body;
  memset(&body, 0, sizeof body);
  Variant v;
  memset(&v, 0, sizeof v);
  char email[EMAIL_MAX + 1];
  const char *why = NULL;
  json_t *key_channels = NULL;
  const char *channel = NULL;

  if (read_body(req, &body)) goto out;
  if (!body.email) {
    http_respond_error(req, 400, "invalid_data", "email is required");
    goto out;
  }
  if (email_normalize(body.email, strlen(body.email), email, &why)) {
    http_respond_error(req, 400, "invalid_data", "Invalid email: %s", why);
    goto out;
  }
  if (resolve_channel(req, app, &body, &key_channels, &channel)) goto out;

  int rc = store_variant_get(app->store, variant_id, &v);
  if (rc == STORE_NOT_FOUND) {
    http_respond_error(req, 404, "not_found",
                       "Variant with id: %s was not found", variant_id);
    goto out;
  }
  if (rc != 0) {
    api_store_failed(req);
    goto out;
  }
  long long quantity = 0;
  if (engine_scope_quantity(app, &v, channel, &quantity)) {
    api_store_failed(req);
    goto out;
  }
  if (stock_in_stock(&v, quantity)) {
    http_respond_error(req, 400, "not_allowed",
                       "You cannot sign up for restock notifications on a "
                       "product that is not sold out");
    goto out;
  }

  char created_at[32];
  long long inserted = 0, linked_event = 0;
  if (store_begin(app->store) ||
      store_subscription_add(app->store, v.id, channel, email, created_at,
                             &inserted, &linked_event) ||
      (inserted &&
       emit_subscribed(app, inserted, linked_event, v.id, channel, email)) ||
      store_commit(app->store)) {
    store_rollback(app->store);
    api_store_failed(req);
    goto out;
  }
  if (inserted) outbox_kick(app->outbox);
  http_respond_json(
      req, 201,
      json_pack("{s:{s:s, s:o, s:s, s:s}}", "restock_notification",
                "variant_id", v.id, "sales_channel_id",
                channel ? json_string(channel) : json_null(), "email", email,
                "created_at", created_at));
out:
  json_decref(key_channels);
  variant_clear(&v);
  url_pairs_free(&body.form);
  json_decref(body.json);
}
