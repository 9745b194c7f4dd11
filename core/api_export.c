/* GET /admin/restock-notifications/export: every matching subscription,
 * as CSV or NDJSON, streamed.
 *
 * The rows are read a page at a time by read units, each rendering its
 * page into text on the storage side; the loop only writes the text out as
 * one chunk. The next page is read once the client has taken enough of
 * what was sent (http.h's streams), so memory holds one page and about a
 * megabyte of unsent output whatever the row count, and the loop serves
 * other requests between pages. Each page is a transaction of its own: a
 * row that moves while the export runs (a subscription notified mid-way)
 * may show in both of its places or in neither. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "json_text.h"
#include "log.h"
#include "xmalloc.h"

/* Rows rendered per read unit. */
#define EXPORT_PAGE 1000

static const char *const columns[] = {
    "variant_id", "sales_channel_id", "email",      "status",
    "quantity",   "locale",           "created_at", "notified_at"};
#define NCOLUMNS (sizeof columns / sizeof columns[0])

typedef struct {
  ReadCall call;
  HttpRequest *req;
  int status; /* a SubscriptionStatus, or -1 for any */
  char variant_id[DOMAIN_MAX_ID + 2];
  bool by_variant;
  bool ndjson;
  ExportCursor cursor;
  Buf page;
  bool begun;
  long long rows;
  uint64_t start_ms;
} Export;

/* One CSV field, RFC 4180: quoted when it holds a comma, a quote, CR or
 * LF, its quotes doubled. NULL is the empty field. */
static void csv_field(Buf *b, const char *s) {
  if (!s) return;
  if (!s[strcspn(s, ",\"\r\n")]) {
    buf_puts(b, s);
    return;
  }
  buf_puts(b, "\"");
  for (const char *p = s; *p; p++) {
    if (*p == '"') buf_puts(b, "\"");
    buf_append(b, p, 1);
  }
  buf_puts(b, "\"");
}

static int export_row(void *ctx, const SubscriptionRow *row) {
  Export *x = ctx;
  Buf *b = &x->page;
  char quantity[24] = "";
  if (row->quantity > 0)
    snprintf(quantity, sizeof quantity, "%lld", row->quantity);
  const char *values[NCOLUMNS] = {row->variant_id,
                                  row->sales_channel_id,
                                  row->email,
                                  subscription_status_name(row->status),
                                  quantity[0] ? quantity : NULL,
                                  row->locale,
                                  row->created_at,
                                  row->notified_at};
  if (x->ndjson) {
    json_t *j = json_object();
    for (size_t i = 0; i < NCOLUMNS; i++) {
      json_t *v = !values[i] ? json_null()
                  : i == 4   ? json_integer(row->quantity)
                             : json_string(values[i]);
      json_object_set_new(j, columns[i], v ? v : json_null());
    }
    int rc = json_text_append(b, j);
    json_decref(j);
    if (rc) return RESTOCK_ESTORE;
    buf_puts(b, "\n");
  } else {
    for (size_t i = 0; i < NCOLUMNS; i++) {
      if (i) buf_puts(b, ",");
      csv_field(b, values[i]);
    }
    buf_puts(b, "\r\n");
  }
  x->rows++;
  return 0;
}

static int export_fn(StoreTx *tx, ReadCall *c) {
  Export *x = (Export *)c;
  return store_subscription_export(tx, x->status,
                                   x->by_variant ? x->variant_id : NULL,
                                   EXPORT_PAGE, &x->cursor, export_row, x);
}

static void export_done(ReadCall *c, int status);

static void export_next(Export *x) {
  x->call.fn = export_fn;
  x->call.done = export_done;
  domain_read(x->call.unit.d, &x->call);
}

static void export_drained(void *arg) { export_next(arg); }

static void export_free(Export *x) {
  buf_free(&x->page);
  free(x);
}

static void export_done(ReadCall *c, int status) {
  Export *x = (Export *)c;
  HttpRequest *req = x->req;
  if (status && !x->begun) {
    api_fail(req, status, NULL);
    export_free(x);
    return;
  }
  if (status) {
    log_warn("export: stopped after %lld rows: %s", x->rows,
             restock_strerror(status));
    http_stream_end(req, false);
    export_free(x);
    return;
  }
  if (!x->begun) {
    x->begun = true;
    if (http_stream_begin(
            req, 200,
            x->ndjson ? "application/x-ndjson" : "text/csv; charset=utf-8",
            export_drained, x)) {
      http_stream_end(req, false);
      export_free(x);
      return;
    }
  }
  if (http_stream_gone(req)) {
    log_info("export: the client left after %lld rows", x->rows);
    http_stream_end(req, false);
    export_free(x);
    return;
  }
  bool more = http_stream_write(req, x->page.data, x->page.len);
  buf_reset(&x->page);
  if (x->cursor.table >= 3) {
    log_info("export: %lld rows in %llu ms", x->rows,
             (unsigned long long)(uv_now(x->call.unit.d->loop) - x->start_ms));
    http_stream_end(req, true);
    export_free(x);
  } else if (more) {
    export_next(x);
  }
  /* else export_drained goes on once the client has taken enough. */
}

void api_admin_export(HttpRequest *req, void *data) {
  Api *api = data;
  const char *format = url_pairs_get(&req->params, "format");
  const char *status = url_pairs_get(&req->params, "status");
  const char *variant = url_pairs_get(&req->params, "variant_id");
  bool ndjson = false;
  if (format && strcmp(format, "ndjson") == 0) {
    ndjson = true;
  } else if (format && strcmp(format, "csv") != 0) {
    http_respond_error(req, 400, "invalid_data",
                       "format must be csv or ndjson");
    return;
  }
  int st = -1;
  if (status) {
    for (int i = 0; i <= SUB_PENDING && st < 0; i++)
      if (strcmp(status, subscription_status_name(i)) == 0) st = i;
    if (st < 0) {
      http_respond_error(req, 400, "invalid_data",
                         "status must be active, pending, notified, expired "
                         "or cancelled");
      return;
    }
  }
  Export *x = xcalloc(1, sizeof *x);
  x->status = st;
  x->ndjson = ndjson;
  if (variant) {
    /* An id longer than any stored one matches nothing. */
    x->by_variant = true;
    snprintf(x->variant_id, sizeof x->variant_id, "%s",
             strlen(variant) > DOMAIN_MAX_ID ? "\x01" : variant);
  }
  if (!ndjson) {
    for (size_t i = 0; i < NCOLUMNS; i++) {
      if (i) buf_puts(&x->page, ",");
      buf_puts(&x->page, columns[i]);
    }
    buf_puts(&x->page, "\r\n");
  }
  http_add_header(req, "Content-Disposition",
                  ndjson
                      ? "attachment; filename=\"restock-notifications.ndjson\""
                      : "attachment; filename=\"restock-notifications.csv\"");
  http_add_header(req, "Cache-Control", "no-store");
  x->start_ms = uv_now(api->loop);
  x->req = http_defer(req);
  x->call.fn = export_fn;
  x->call.done = export_done;
  domain_read(api->d, &x->call);
}
