/* GET /admin/reports/conversions: what the notifications sold (orders.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "isotime.h"
#include "json_text.h"
#include "orders.h"
#include "xmalloc.h"

typedef struct {
  char since[ISOTIME_LEN];
  char until[ISOTIME_LEN];
  char variant_id[DOMAIN_MAX_ID + 1];
  ConversionFilter f;
  long long limit, offset;
} ConversionsQuery;

/* Appends a JSON string. */
static void put_string(Buf *out, const char *s) {
  json_t *j = json_string(s);
  if (!j) j = json_string("");
  json_text_append(out, j);
  json_decref(j);
}

/* converted / notified, from 0 to 1, with four decimals at most. */
static void put_rate(Buf *out, long long notified, long long converted) {
  if (notified <= 0 || converted <= 0) {
    buf_puts(out, "0");
    return;
  }
  long long permyriad = (converted * 10000 + notified / 2) / notified;
  if (permyriad >= 10000) {
    buf_puts(out, "1");
    return;
  }
  char digits[24];
  snprintf(digits, sizeof digits, "%04lld", permyriad);
  int keep = 4;
  while (keep > 1 && digits[keep - 1] == '0') keep--;
  buf_printf(out, "0.%.*s", keep, digits);
}

typedef struct {
  Buf *out;
  bool first;
} RevenueOut;

static int revenue_row(void *ctx, const char *currency, long long amount) {
  RevenueOut *r = ctx;
  char text[64];
  orders_format_amount(amount, currency, text, sizeof text);
  if (!r->first) buf_puts(r->out, ", ");
  r->first = false;
  put_string(r->out, currency);
  /* The amount is a JSON number written exactly: "49.00" stays 49.00. */
  buf_printf(r->out, ": %s", text);
  return 0;
}

static int put_revenue(StoreTx *tx, Buf *out, const ConversionFilter *f) {
  RevenueOut r = {out, true};
  buf_puts(out, "{");
  int rc = store_conversion_revenue(tx, f, revenue_row, &r);
  buf_puts(out, "}");
  return rc;
}

static int render_conversions(StoreTx *tx, ApiRead *r) {
  ConversionsQuery *q = r->arg;
  long long notified = 0, converted = 0, count = 0;
  int rc = store_conversion_totals(tx, &q->f, &notified, &converted);
  ConversionVariant *vs = NULL;
  size_t n = 0;
  if (rc == 0)
    rc = store_conversion_variants(tx, &q->f, q->limit, q->offset, &vs, &n,
                                   &count);
  Buf *out = &r->out;
  if (rc == 0) {
    buf_printf(out,
               "{\"notified\": %lld, \"converted\": %lld, \"rate\": ", notified,
               converted);
    put_rate(out, notified, converted);
    buf_puts(out, ", \"revenue\": ");
    rc = put_revenue(tx, out, &q->f);
  }
  if (rc == 0) buf_puts(out, ", \"by_variant\": [");
  for (size_t i = 0; rc == 0 && i < n; i++) {
    ConversionFilter one = q->f;
    one.variant_id = vs[i].variant_id;
    buf_puts(out, i ? ", {\"variant_id\": " : "{\"variant_id\": ");
    put_string(out, vs[i].variant_id);
    buf_printf(out, ", \"notified\": %lld, \"converted\": %lld, \"rate\": ",
               vs[i].notified, vs[i].converted);
    put_rate(out, vs[i].notified, vs[i].converted);
    buf_puts(out, ", \"revenue\": ");
    rc = put_revenue(tx, out, &one);
    buf_puts(out, "}");
  }
  if (rc == 0)
    buf_printf(out, "], \"count\": %lld, \"limit\": %lld, \"offset\": %lld}",
               count, q->limit, q->offset);
  free(vs);
  return rc;
}

/* Reads query parameter `name` as an ISO 8601 time into `out` (the stored
 * form); `dflt` when absent. Returns 0, or RESTOCK_EINVAL having answered
 * 400. */
static int time_param(HttpRequest *req, const char *name, const char *dflt,
                      char out[ISOTIME_LEN]) {
  const char *s = url_pairs_get(&req->params, name);
  if (!s || !*s) {
    snprintf(out, ISOTIME_LEN, "%s", dflt);
    return 0;
  }
  long long ms = 0;
  if (isotime_parse(s, strlen(s), &ms)) {
    http_respond_error(req, 400, "invalid_data",
                       "%s must be an ISO 8601 time (2026-03-01 or "
                       "2026-03-01T10:00:00Z)",
                       name);
    return RESTOCK_EINVAL;
  }
  isotime_format(ms, out);
  return 0;
}

/* GET /admin/reports/conversions?since=&until=&variant_id=&limit=&offset= */
void api_admin_conversions_get(HttpRequest *req, void *data) {
  ConversionsQuery *q = xcalloc(1, sizeof *q);
  /* Every stored time sorts after "" and before "~". */
  if (api_paging(req, &q->limit, &q->offset) ||
      time_param(req, "since", "", q->since) ||
      time_param(req, "until", "~", q->until)) {
    free(q);
    return;
  }
  const char *variant = url_pairs_get(&req->params, "variant_id");
  if (variant && !domain_valid_id(variant)) {
    http_respond_error(req, 400, "invalid_data",
                       "variant_id must be an id of 1 to %d characters",
                       DOMAIN_MAX_ID);
    free(q);
    return;
  }
  if (variant) snprintf(q->variant_id, sizeof q->variant_id, "%s", variant);
  q->f.since = q->since;
  q->f.until = q->until;
  q->f.variant_id = variant ? q->variant_id : NULL;
  api_read(data, req, render_conversions, q, free);
}
