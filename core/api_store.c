/* The storefront routes: subscribing to a sold-out variant, unsubscribing. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "email.h"
#include "pages.h"
#include "subscriptions.h"
#include "token.h"
#include "url.h"
#include "xmalloc.h"

/* The fields of a subscribe request, from either body encoding. Strings
 * point into `form` or `json`, which own them. */
typedef struct {
  KeyValueList form;
  json_t *json;
  const char *email;
  const char *sales_channel_id;
} SubscribeBody;

/* Reads the body. On failure responds 400 and returns -1. */
static int read_body(HttpRequest *req, SubscribeBody *b) {
  if (api_is_form(req)) {
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

typedef struct {
  SubscribeCall call;
  HttpRequest *req;
  bool html; /* a browser's form: answer with a page */
} SubscribeReq;

static void subscribed(SubscribeCall *c, int status) {
  SubscribeReq *r = (SubscribeReq *)c;
  if (status && r->html) {
    pages_respond_failure(r->req, status, c->message);
  } else if (status) {
    api_fail(r->req, status, c->message);
  } else if (r->html) {
    pages_respond(r->req, 201, PAGE_SUBSCRIBED, c->email);
  } else {
    http_respond_json(
        r->req, 201,
        json_pack("{s:{s:s, s:o, s:s, s:s, s:s}}", "restock_notification",
                  "variant_id", c->variant_id, "sales_channel_id",
                  c->channel ? json_string(c->channel) : json_null(), "email",
                  c->email, "created_at", c->created_at, "status", "active"));
  }
  subscribe_call_clear(c);
  free(r);
}

/* POST /restock-notifications/variants/{variant_id} */
void api_subscribe(HttpRequest *req, void *data) {
  Api *api = data;
  const char *variant_id = router_param(&req->match, "variant_id");
  SubscribeBody body;
  memset(&body, 0, sizeof body);
  char email[EMAIL_MAX + 1];
  const char *why = NULL;
  bool html = api_is_form(req) && pages_wanted(req);
  if (read_body(req, &body)) goto out;
  if (!body.email) {
    if (html)
      pages_respond_failure(req, RESTOCK_EINVAL, "email is required");
    else
      http_respond_error(req, 400, "invalid_data", "email is required");
    goto out;
  }
  if (email_normalize(body.email, strlen(body.email), email, &why)) {
    char msg[300];
    snprintf(msg, sizeof msg, "Invalid email: %s", why);
    if (html)
      pages_respond_failure(req, RESTOCK_EINVAL, msg);
    else
      http_respond_error(req, 400, "invalid_data", "%s", msg);
    goto out;
  }
  if (!domain_valid_id(variant_id)) {
    http_respond_error(req, 404, "not_found",
                       "Variant with id: %s was not found", variant_id);
    goto out;
  }
  if (body.sales_channel_id && !domain_valid_id(body.sales_channel_id)) {
    http_respond_error(req, 400, "invalid_data",
                       "Sales channel with id: %s was not found",
                       body.sales_channel_id);
    goto out;
  }
  const char *key = http_header(req, "x-publishable-api-key");
  if (key && (strlen(key) == 0 || strlen(key) > DOMAIN_MAX_ID)) {
    http_respond_error(req, 400, "invalid_data",
                       "Publishable API key %.64s was not found", key);
    goto out;
  }
  SubscribeReq *r = xcalloc(1, sizeof *r);
  SubscribeCall *c = &r->call;
  snprintf(c->variant_id, sizeof c->variant_id, "%s", variant_id);
  memcpy(c->email, email, sizeof c->email);
  c->sales_channel_id =
      body.sales_channel_id ? xstrdup(body.sales_channel_id) : NULL;
  c->publishable_key = key ? xstrdup(key) : NULL;
  c->done = subscribed;
  r->html = html;
  r->req = http_defer(req);
  subscriptions_subscribe(api->d, c);
out:
  url_pairs_free(&body.form);
  json_decref(body.json);
}

typedef struct {
  UnsubscribeCall call;
  HttpRequest *req;
  bool html;
} UnsubscribeReq;

static void unsubscribed(UnsubscribeCall *c, int status) {
  UnsubscribeReq *r = (UnsubscribeReq *)c;
  if (status && r->html)
    pages_respond_failure(r->req, status, NULL);
  else if (status)
    api_fail(r->req, status, NULL);
  else if (r->html)
    pages_respond(r->req, 200, PAGE_UNSUBSCRIBED, NULL);
  else
    /* Answered the same whether or not the subscription was still there:
     * unsubscribing twice is no error. */
    http_respond_json(r->req, 200, json_pack("{s:b}", "unsubscribed", 1));
  free(r);
}

/* GET or POST /restock-notifications/unsubscribe?token=T (POST may carry
 * the token in a JSON or form body instead). */
void api_unsubscribe(HttpRequest *req, void *data) {
  Api *api = data;
  const char *token = url_pairs_get(&req->params, "token");
  KeyValueList form = {0};
  json_t *body = NULL;
  bool html = pages_wanted(req);
  if (!token && strcmp(req->method, "POST") == 0 && req->body_len > 0) {
    if (api_is_form(req)) {
      if (url_parse_pairs(req->body, req->body_len, 64, &form) == 0)
        token = url_pairs_get(&form, "token");
    } else if ((body = api_json_body(req)) == NULL) {
      return;
    } else if (json_is_string(json_object_get(body, "token"))) {
      token = json_string_value(json_object_get(body, "token"));
    }
  }
  long long id = 0;
  if (!token) {
    if (html)
      pages_respond_failure(req, RESTOCK_EINVAL, "token is required");
    else
      http_respond_error(req, 400, "invalid_data", "token is required");
  } else if (token_parse(api->d->token_key, token, TOKEN_UNSUBSCRIBE, &id)) {
    if (html)
      pages_respond(req, 400, PAGE_BAD_TOKEN, NULL);
    else
      http_respond_error(req, 400, "invalid_data",
                         "The unsubscribe token is not valid");
  } else {
    UnsubscribeReq *r = xcalloc(1, sizeof *r);
    r->call.subscription_id = id;
    r->call.done = unsubscribed;
    r->html = html;
    r->req = http_defer(req);
    subscriptions_unsubscribe(api->d, &r->call);
  }
  url_pairs_free(&form);
  json_decref(body);
}
