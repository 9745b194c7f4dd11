/* The storefront routes: subscribing to a sold-out variant, confirming it,
 * unsubscribing, and the shopper's own page. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "email.h"
#include "json_text.h"
#include "log.h"
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
  long long quantity; /* 0: not given */
  const char *locale; /* NULL: not given */
} SubscribeBody;

#define QUANTITY_RULE "quantity must be an integer from 1 to 1000000"
#define LOCALE_RULE                                                      \
  "locale must be a BCP 47 language tag of at most 35 characters (such " \
  "as de or pt-BR)"

/* A form's quantity: decimal digits only. */
static int form_quantity(const char *s, long long *out) {
  if (!s || !*s) return 0; /* an empty field is no wish */
  long long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9' || p - s > 7) return -1;
    v = v * 10 + (*p - '0');
  }
  if (v < 1 || v > SUBSCRIPTION_MAX_QUANTITY) return -1;
  *out = v;
  return 0;
}

/* Reads the body. On failure responds 400 (a page for a browser's form)
 * and returns -1. */
static int read_body(HttpRequest *req, SubscribeBody *b, bool html) {
  const char *bad = NULL;
  if (api_is_form(req)) {
    if (url_parse_pairs(req->body, req->body_len, 64, &b->form)) {
      bad = "The form body is malformed";
      goto fail;
    }
    b->email = url_pairs_get(&b->form, "email");
    b->sales_channel_id = url_pairs_get(&b->form, "sales_channel_id");
    if (b->sales_channel_id && !*b->sales_channel_id)
      b->sales_channel_id = NULL;
    if (form_quantity(url_pairs_get(&b->form, "quantity"), &b->quantity)) {
      bad = QUANTITY_RULE;
      goto fail;
    }
    b->locale = url_pairs_get(&b->form, "locale");
    if (b->locale && !*b->locale) b->locale = NULL;
  } else {
    b->json = api_json_body(req);
    if (!b->json) return -1;
    json_t *email = json_object_get(b->json, "email");
    json_t *channel = json_object_get(b->json, "sales_channel_id");
    json_t *quantity = json_object_get(b->json, "quantity");
    json_t *locale = json_object_get(b->json, "locale");
    if (email && !json_is_string(email)) {
      bad = "email must be a string";
      goto fail;
    }
    if (channel && !json_is_null(channel) && !json_is_string(channel)) {
      bad = "sales_channel_id must be a string";
      goto fail;
    }
    /* An integer, not a float that happens to be whole (1.0) nor a
     * string of digits ("3"). */
    if (quantity && !json_is_null(quantity)) {
      if (!json_is_integer(quantity) || json_integer_value(quantity) < 1 ||
          json_integer_value(quantity) > SUBSCRIPTION_MAX_QUANTITY) {
        bad = QUANTITY_RULE;
        goto fail;
      }
      b->quantity = (long long)json_integer_value(quantity);
    }
    if (locale && !json_is_null(locale)) {
      if (!json_is_string(locale)) {
        bad = LOCALE_RULE;
        goto fail;
      }
      b->locale = json_string_value(locale);
    }
    b->email = email ? json_string_value(email) : NULL;
    b->sales_channel_id =
        json_is_string(channel) ? json_string_value(channel) : NULL;
  }
  if (b->locale && !subscriptions_valid_locale(b->locale)) {
    bad = LOCALE_RULE;
    goto fail;
  }
  return 0;
fail:
  if (html)
    pages_respond_failure(req, RESTOCK_EINVAL, bad);
  else
    http_respond_error(req, 400, "invalid_data", "%s", bad);
  return -1;
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
    pages_respond(r->req, 201, c->pending ? PAGE_PENDING : PAGE_SUBSCRIBED,
                  c->email, NULL);
  } else {
    /* The answer's JSON written at once, not built as jansson values: this
     * is the loop's share of the hot route (the strings were validated as
     * they came in). */
    static Buf out; /* the loop's; http_respond copies it */
    buf_reset(&out);
    buf_puts(&out, "{\"restock_notification\":{\"variant_id\":");
    json_text_cstring(&out, c->variant_id);
    buf_puts(&out, ",\"sales_channel_id\":");
    if (c->channel)
      json_text_cstring(&out, c->channel);
    else
      buf_puts(&out, "null");
    buf_puts(&out, ",\"email\":");
    json_text_cstring(&out, c->email);
    buf_puts(&out, ",\"created_at\":");
    json_text_cstring(&out, c->created_at);
    buf_puts(&out,
             c->pending ? ",\"status\":\"pending\"" : ",\"status\":\"active\"");
    if (c->quantity > 0) buf_printf(&out, ",\"quantity\":%lld", c->quantity);
    if (c->locale[0]) {
      buf_puts(&out, ",\"locale\":");
      json_text_cstring(&out, c->locale);
    }
    buf_puts(&out, "}}");
    http_respond(r->req, 201, "application/json", out.data, out.len);
  }
  subscribe_call_clear(c);
  free(r);
}

/* The request's headers for the plugin's hook: name -> value, a repeated
 * header's values joined with ", ". */
static json_t *headers_json(const HttpRequest *req) {
  json_t *h = json_object();
  for (size_t i = 0; i < req->nheaders; i++) {
    const HttpHeader *x = &req->headers[i];
    json_t *old = json_object_get(h, x->name);
    if (old) {
      char *joined = xasprintf("%s, %s", json_string_value(old), x->value);
      json_object_set_new(h, x->name, json_string(joined));
      free(joined);
    } else {
      json_object_set_new(h, x->name, json_string(x->value));
    }
  }
  return h;
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
  if (read_body(req, &body, html)) goto out;
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
  c->quantity = body.quantity;
  if (body.locale) snprintf(c->locale, sizeof c->locale, "%s", body.locale);
  /* The hook's view of the request, gathered only for a hook. */
  if (subscriptions_hooked(api->d)) {
    api_client_address(api, req, c->remote_addr, sizeof c->remote_addr);
    c->headers = headers_json(req);
  }
  c->done = subscribed;
  r->html = html;
  r->req = http_defer(req);
  subscriptions_subscribe(api->d, c);
out:
  url_pairs_free(&body.form);
  json_decref(body.json);
}

/* The token of a confirm or unsubscribe request: in the query, or for a
 * POST in its JSON or form body. Sets *manage to a form's or query's
 * `manage` (the shopper's page to go back to), if any. The strings live in
 * `form`, `body` or the request. Returns -1 having answered (bad JSON). */
static int read_token(HttpRequest *req, KeyValueList *form, json_t **body,
                      const char **token, const char **manage) {
  *token = url_pairs_get(&req->params, "token");
  *manage = url_pairs_get(&req->params, "manage");
  if (!*token && strcmp(req->method, "POST") == 0 && req->body_len > 0) {
    if (api_is_form(req)) {
      if (url_parse_pairs(req->body, req->body_len, 64, form) == 0) {
        *token = url_pairs_get(form, "token");
        if (!*manage) *manage = url_pairs_get(form, "manage");
      }
    } else if ((*body = api_json_body(req)) == NULL) {
      return -1;
    } else if (json_is_string(json_object_get(*body, "token"))) {
      *token = json_string_value(json_object_get(*body, "token"));
    }
  }
  return 0;
}

/* The link back to the shopper's page, relative to /restock-notifications/
 * (the pages' routes all live there). */
static char *mine_link(const char *manage_token) {
  return xasprintf("mine?token=%s", manage_token);
}

typedef struct {
  UnsubscribeCall call;
  HttpRequest *req;
  bool html;
  char manage[TOKEN_MANAGE_MAX]; /* "" when the shopper came from nowhere */
} UnsubscribeReq;

static void unsubscribed(UnsubscribeCall *c, int status) {
  UnsubscribeReq *r = (UnsubscribeReq *)c;
  if (status && r->html) {
    pages_respond_failure(r->req, status, NULL);
  } else if (status) {
    api_fail(r->req, status, NULL);
  } else if (r->html) {
    /* Back to the shopper's page while it has something to show. */
    char *back = r->manage[0] && c->email_known ? mine_link(r->manage) : NULL;
    pages_respond(r->req, 200, PAGE_UNSUBSCRIBED, NULL, back);
    free(back);
  } else {
    /* Answered the same whether or not the subscription was still there:
     * unsubscribing twice is no error. */
    http_respond_json(r->req, 200, json_pack("{s:b}", "unsubscribed", 1));
  }
  free(r);
}

/* GET or POST /restock-notifications/unsubscribe?token=T (POST may carry
 * the token in a JSON or form body instead). */
void api_unsubscribe(HttpRequest *req, void *data) {
  Api *api = data;
  KeyValueList form = {0};
  json_t *body = NULL;
  const char *token, *manage;
  bool html = pages_wanted(req);
  if (read_token(req, &form, &body, &token, &manage)) goto out;
  long long id = 0;
  char email[EMAIL_MAX + 1] = "";
  if (!token) {
    if (html)
      pages_respond_failure(req, RESTOCK_EINVAL, "token is required");
    else
      http_respond_error(req, 400, "invalid_data", "token is required");
  } else if (token_parse(api->d->token_key, token, TOKEN_UNSUBSCRIBE, &id)) {
    if (html)
      pages_respond(req, 400, PAGE_BAD_TOKEN, NULL, NULL);
    else
      http_respond_error(req, 400, "invalid_data",
                         "The unsubscribe token is not valid");
  } else {
    UnsubscribeReq *r = xcalloc(1, sizeof *r);
    r->call.subscription_id = id;
    r->call.done = unsubscribed;
    /* A manage token that does not verify only loses the link back. */
    if (html && manage && strlen(manage) < sizeof r->manage &&
        token_parse_manage(api->d->token_key, manage, email, sizeof email) ==
            0) {
      snprintf(r->manage, sizeof r->manage, "%s", manage);
      snprintf(r->call.email, sizeof r->call.email, "%s", email);
    }
    r->html = html;
    r->req = http_defer(req);
    subscriptions_unsubscribe(api->d, &r->call);
  }
out:
  url_pairs_free(&form);
  json_decref(body);
}

typedef struct {
  ConfirmCall call;
  HttpRequest *req;
  bool html;
} ConfirmReq;

static void confirmed(ConfirmCall *c, int status) {
  ConfirmReq *r = (ConfirmReq *)c;
  if (status == RESTOCK_ENOTFOUND && r->html) {
    pages_respond(r->req, 400, PAGE_CONFIRM_GONE, NULL, NULL);
  } else if (status == RESTOCK_ENOTFOUND) {
    http_respond_error(r->req, 400, "invalid_data",
                       "The confirm token's subscription is gone (it was not "
                       "confirmed in time, or was unsubscribed)");
  } else if (status && r->html) {
    pages_respond_failure(r->req, status, NULL);
  } else if (status) {
    api_fail(r->req, status, NULL);
  } else if (r->html) {
    char manage[TOKEN_MANAGE_MAX];
    token_make_manage(r->call.unit.d->token_key, c->email, manage);
    char *back = mine_link(manage);
    pages_respond(r->req, 200, PAGE_CONFIRMED, NULL, back);
    free(back);
  } else {
    http_respond_json(r->req, 200, json_pack("{s:b}", "confirmed", 1));
  }
  free(r);
}

/* GET or POST /restock-notifications/confirm?token=T */
void api_confirm(HttpRequest *req, void *data) {
  Api *api = data;
  KeyValueList form = {0};
  json_t *body = NULL;
  const char *token, *manage;
  bool html = pages_wanted(req);
  if (read_token(req, &form, &body, &token, &manage)) goto out;
  long long id = 0;
  if (!token) {
    if (html)
      pages_respond_failure(req, RESTOCK_EINVAL, "token is required");
    else
      http_respond_error(req, 400, "invalid_data", "token is required");
  } else if (token_parse(api->d->token_key, token, TOKEN_CONFIRM, &id)) {
    if (html)
      pages_respond(req, 400, PAGE_BAD_TOKEN, NULL, NULL);
    else
      http_respond_error(req, 400, "invalid_data",
                         "The confirm token is not valid");
  } else {
    ConfirmReq *r = xcalloc(1, sizeof *r);
    r->call.subscription_id = id;
    r->call.done = confirmed;
    r->html = html;
    r->req = http_defer(req);
    subscriptions_confirm(api->d, &r->call);
  }
out:
  url_pairs_free(&form);
  json_decref(body);
}

/* ---- the shopper's page ------------------------------------------------ */

/* The most alerts of each kind (active, pending) the page lists. */
#define MINE_MAX 500

typedef struct {
  SubscriptionRow row; /* strings owned below */
  char *variant_id, *channel, *created_at, *locale, *title;
  char unsubscribe[TOKEN_LEN + 1];
} MineRow;

typedef struct {
  ReadCall call;
  HttpRequest *req;
  bool html;
  char email[EMAIL_MAX + 1];
  char manage[TOKEN_MANAGE_MAX];
  MineRow *rows;
  size_t n;
  bool known;
} MineReq;

static int mine_row(void *ctx, const SubscriptionRow *row) {
  MineReq *m = ctx;
  m->rows = xrealloc(m->rows, (m->n + 1) * sizeof *m->rows);
  MineRow *r = &m->rows[m->n++];
  memset(r, 0, sizeof *r);
  r->row = *row;
  r->variant_id = xstrdup(row->variant_id);
  r->channel = row->sales_channel_id ? xstrdup(row->sales_channel_id) : NULL;
  r->created_at = xstrdup(row->created_at);
  r->locale = row->locale ? xstrdup(row->locale) : NULL;
  token_make(m->call.unit.d->token_key, TOKEN_UNSUBSCRIBE, row->id,
             r->unsubscribe);
  return 0;
}

static int mine_fn(StoreTx *tx, ReadCall *c) {
  MineReq *m = (MineReq *)c;
  SubscriptionStatus kinds[] = {SUB_ACTIVE, SUB_PENDING};
  for (size_t k = 0; k < 2; k++) {
    SubscriptionFilter f = {
        .email = m->email, .status = kinds[k], .limit = MINE_MAX};
    long long count = 0;
    int rc = store_subscription_list(tx, &f, mine_row, m, &count);
    if (rc) return rc;
  }
  m->known = m->n > 0;
  if (!m->known) {
    int rc = store_email_known(tx, m->email, &m->known);
    if (rc) return rc;
  }
  /* The page names each product. */
  for (size_t i = 0; m->html && i < m->n; i++) {
    Variant v;
    memset(&v, 0, sizeof v);
    if (store_variant_get(tx, m->rows[i].variant_id, &v) == 0) {
      const char *t = v.title && *v.title ? v.title
                      : v.sku && *v.sku   ? v.sku
                                          : NULL;
      if (t) m->rows[i].title = xstrdup(t);
    }
    variant_clear(&v);
  }
  return 0;
}

static void mine_free(MineReq *m) {
  for (size_t i = 0; i < m->n; i++) {
    MineRow *r = &m->rows[i];
    free(r->variant_id);
    free(r->channel);
    free(r->created_at);
    free(r->locale);
    free(r->title);
  }
  free(m->rows);
  free(m);
}

static void mine_done(ReadCall *c, int status) {
  MineReq *m = (MineReq *)c;
  HttpRequest *req = m->req;
  if (status == 0 && !m->known) {
    /* Nothing is held for this email (it was forgotten, or never had a
     * subscription): the token names nothing. */
    if (m->html)
      pages_respond(req, 400, PAGE_BAD_TOKEN, NULL, NULL);
    else
      http_respond_error(req, 400, "invalid_data",
                         "The manage token is not valid");
  } else if (status && m->html) {
    pages_respond_failure(req, status, NULL);
  } else if (status) {
    api_fail(req, status, NULL);
  } else if (m->html) {
    MinePage p;
    pages_mine_begin(&p, req, m->email);
    for (size_t i = 0; i < m->n; i++) {
      MineRow *r = &m->rows[i];
      pages_mine_row(&p, r->title ? r->title : r->variant_id, r->created_at,
                     r->row.quantity, r->row.status == SUB_PENDING,
                     r->unsubscribe, m->manage);
    }
    pages_mine_end(&p, req);
  } else {
    json_t *list = json_array();
    for (size_t i = 0; i < m->n; i++) {
      MineRow *r = &m->rows[i];
      json_t *j = json_pack("{s:s, s:o, s:s, s:s, s:s}", "variant_id",
                            r->variant_id, "sales_channel_id",
                            r->channel ? json_string(r->channel) : json_null(),
                            "created_at", r->created_at, "status",
                            subscription_status_name(r->row.status),
                            "unsubscribe_token", r->unsubscribe);
      if (r->row.quantity > 0)
        json_object_set_new(j, "quantity", json_integer(r->row.quantity));
      if (r->locale) json_object_set_new(j, "locale", json_string(r->locale));
      json_array_append_new(list, j);
    }
    http_respond_json(req, 200,
                      json_pack("{s:s, s:o}", "email", m->email,
                                "restock_notifications", list));
  }
  mine_free(m);
}

/* GET /restock-notifications/mine?token=MANAGE */
void api_mine(HttpRequest *req, void *data) {
  Api *api = data;
  const char *token = url_pairs_get(&req->params, "token");
  bool html = pages_wanted(req);
  char email[EMAIL_MAX + 1];
  if (!token) {
    if (html)
      pages_respond_failure(req, RESTOCK_EINVAL, "token is required");
    else
      http_respond_error(req, 400, "invalid_data", "token is required");
    return;
  }
  if (strlen(token) >= TOKEN_MANAGE_MAX ||
      token_parse_manage(api->d->token_key, token, email, sizeof email)) {
    if (html)
      pages_respond(req, 400, PAGE_BAD_TOKEN, NULL, NULL);
    else
      http_respond_error(req, 400, "invalid_data",
                         "The manage token is not valid");
    return;
  }
  MineReq *m = xcalloc(1, sizeof *m);
  m->html = html;
  snprintf(m->email, sizeof m->email, "%s", email);
  snprintf(m->manage, sizeof m->manage, "%s", token);
  m->call.fn = mine_fn;
  m->call.done = mine_done;
  m->req = http_defer(req);
  domain_read(api->d, &m->call);
}
