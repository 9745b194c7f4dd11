#include "orders.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "email.h"
#include "isotime.h"
#include "xmalloc.h"

/* ---- amounts ----------------------------------------------------------------
 */

int orders_parse_amount(const json_t *v, long long *micros) {
  if (json_is_integer(v)) {
    json_int_t n = json_integer_value(v);
    if (n < 0 || n > ORDERS_MAX_AMOUNT) return RESTOCK_EINVAL;
    *micros = (long long)n * ORDERS_SCALE;
    return 0;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!isfinite(d) || d < 0 || d > (double)ORDERS_MAX_AMOUNT)
      return RESTOCK_EINVAL;
    /* A binary fraction is rounded to the nearest millionth: 49.99 is
     * 49990000, as the shop meant. */
    *micros = llround(d * (double)ORDERS_SCALE);
    return 0;
  }
  if (!json_is_string(v)) return RESTOCK_EINVAL;
  const char *s = json_string_value(v);
  size_t len = json_string_length(v);
  size_t i = 0;
  long long whole = 0, frac = 0;
  int whole_digits = 0, frac_digits = 0;
  for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, whole_digits++) {
    if (whole_digits >= 12) return RESTOCK_EINVAL;
    whole = whole * 10 + (s[i] - '0');
  }
  if (whole_digits == 0) return RESTOCK_EINVAL;
  if (i < len && s[i] == '.') {
    for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, frac_digits++) {
      if (frac_digits >= 6) return RESTOCK_EINVAL;
      frac = frac * 10 + (s[i] - '0');
    }
    if (frac_digits == 0) return RESTOCK_EINVAL;
  }
  if (i != len || whole > ORDERS_MAX_AMOUNT) return RESTOCK_EINVAL;
  for (int k = frac_digits; k < 6; k++) frac *= 10;
  *micros = whole * ORDERS_SCALE + frac;
  if (*micros > ORDERS_MAX_AMOUNT * ORDERS_SCALE) return RESTOCK_EINVAL;
  return 0;
}

/* ISO 4217's minor units, for the currencies that do not have 2. */
static int currency_decimals(const char *currency) {
  static const char zero[] =
      "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF";
  static const char three[] = "BHD IQD JOD KWD LYD OMR TND";
  static const char four[] = "CLF UYW";
  if (strlen(currency) != 3) return 2;
  if (strstr(zero, currency)) return 0;
  if (strstr(three, currency)) return 3;
  if (strstr(four, currency)) return 4;
  return 2;
}

void orders_format_amount(long long micros, const char *currency, char *out,
                          size_t len) {
  bool negative = micros < 0;
  unsigned long long m =
      negative ? 0ULL - (unsigned long long)micros : (unsigned long long)micros;
  unsigned long long whole = m / ORDERS_SCALE, frac = m % ORDERS_SCALE;
  char digits[8];
  snprintf(digits, sizeof digits, "%06llu", frac);
  int keep = 6;
  while (keep > 0 && digits[keep - 1] == '0') keep--;
  int decimals = currency_decimals(currency);
  if (keep < decimals) keep = decimals;
  if (keep == 0)
    snprintf(out, len, "%s%llu", negative ? "-" : "", whole);
  else
    snprintf(out, len, "%s%llu.%.*s", negative ? "-" : "", whole, keep, digits);
}

bool orders_currency(const char *s, char out[4]) {
  if (strlen(s) != 3) return false;
  for (int i = 0; i < 3; i++) {
    char c = s[i];
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    if (c < 'A' || c > 'Z') return false;
    out[i] = c;
  }
  out[3] = '\0';
  return true;
}

/* ---- recording an order
 * ------------------------------------------------------- */

/* One variant of the order: its lines' amounts summed. */
typedef struct {
  char *variant_id;
  long long micros;
} OrderLine;

/* An id as a string: a JSON string that is a valid id, or an integer (a
 * shop's numeric id). Writes it into `out` (DOMAIN_MAX_ID + 1 bytes). */
static bool id_of(const json_t *v, char *out, size_t len) {
  if (json_is_integer(v)) {
    snprintf(out, len, "%lld", (long long)json_integer_value(v));
    return true;
  }
  if (!json_is_string(v) ||
      strlen(json_string_value(v)) != json_string_length(v))
    return false;
  if (!domain_valid_id(json_string_value(v))) return false;
  snprintf(out, len, "%s", json_string_value(v));
  return true;
}

/* Checks that `obj` has only the keys in `allowed` (NULL-ended). */
static const char *unknown_key(const json_t *obj, const char *const *allowed) {
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)obj, key, value) {
    size_t i = 0;
    while (allowed[i] && strcmp(allowed[i], key) != 0) i++;
    if (!allowed[i]) return key;
  }
  return NULL;
}

static void lines_free(OrderLine *lines, size_t n) {
  for (size_t i = 0; i < n; i++) free(lines[i].variant_id);
  free(lines);
}

/* Reads the order's lines into one entry per variant. Returns 0 or
 * RESTOCK_EINVAL with `err`. */
static int read_lines(const json_t *items, OrderLine **out, size_t *nout,
                      char *err, size_t errlen) {
  static const char *const fields[] = {"variant_id", "quantity", "amount",
                                       NULL};
  *out = NULL;
  *nout = 0;
  if (!items) return 0;
  if (!json_is_array(items) || json_array_size(items) > ORDERS_MAX_ITEMS) {
    snprintf(err, errlen, "items must be a list of at most %d lines",
             ORDERS_MAX_ITEMS);
    return RESTOCK_EINVAL;
  }
  size_t n = json_array_size(items);
  OrderLine *lines = xcalloc(n ? n : 1, sizeof *lines);
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    const json_t *item = json_array_get(items, i);
    char id[DOMAIN_MAX_ID + 1];
    const char *bad = json_is_object(item) ? unknown_key(item, fields) : NULL;
    if (!json_is_object(item) || bad) {
      snprintf(err, errlen, "items[%zu]: %s%.64s%s", i,
               bad ? "unknown field '" : "a line must be a table",
               bad ? bad : "", bad ? "'" : "");
      lines_free(lines, used);
      return RESTOCK_EINVAL;
    }
    if (!id_of(json_object_get(item, "variant_id"), id, sizeof id)) {
      snprintf(err, errlen, "items[%zu]: variant_id is required: an id", i);
      lines_free(lines, used);
      return RESTOCK_EINVAL;
    }
    const json_t *q = json_object_get(item, "quantity");
    if (q && (!json_is_integer(q) || json_integer_value(q) < 0 ||
              json_integer_value(q) > 1000000000)) {
      snprintf(err, errlen,
               "items[%zu]: quantity must be an integer from 0 to 1000000000",
               i);
      lines_free(lines, used);
      return RESTOCK_EINVAL;
    }
    long long micros = 0;
    const json_t *a = json_object_get(item, "amount");
    if (a && orders_parse_amount(a, &micros)) {
      snprintf(err, errlen,
               "items[%zu]: amount must be a decimal number from 0 to %lld "
               "with at most 6 decimals (\"49.00\", or a number)",
               i, ORDERS_MAX_AMOUNT);
      lines_free(lines, used);
      return RESTOCK_EINVAL;
    }
    size_t k = 0;
    while (k < used && strcmp(lines[k].variant_id, id) != 0) k++;
    if (k == used) lines[used++].variant_id = xstrdup(id);
    /* Each line is at most ORDERS_MAX_AMOUNT, and there are at most
     * ORDERS_MAX_ITEMS of them: the sum fits. */
    lines[k].micros += micros;
  }
  *out = lines;
  *nout = used;
  return 0;
}

static int record_fn(StoreTx *tx, void *arg) {
  static const char *const fields[] = {"order_id",   "email", "currency",
                                       "created_at", "items", NULL};
  OrderCall *c = arg;
  char *err = c->message;
  size_t errlen = sizeof c->message;
  const json_t *o = c->order;
  const char *bad = json_is_object(o) ? unknown_key(o, fields) : NULL;
  if (!json_is_object(o) || bad) {
    snprintf(err, errlen, "%s%.64s%s",
             bad ? "unknown field '" : "an order must be a table",
             bad ? bad : "",
             bad ? "' (the fields are order_id, email, "
                   "currency, created_at and items)"
                 : "");
    return RESTOCK_EINVAL;
  }
  char order_id[DOMAIN_MAX_ID + 1];
  if (!id_of(json_object_get(o, "order_id"), order_id, sizeof order_id)) {
    snprintf(err, errlen,
             "order_id is required: a string of 1 to %d characters or an "
             "integer",
             DOMAIN_MAX_ID);
    return RESTOCK_EINVAL;
  }
  const json_t *je = json_object_get(o, "email");
  char email[EMAIL_MAX + 1] = "";
  if (je && !json_is_null(je)) {
    const char *why = "it must be a string";
    if (!json_is_string(je) ||
        email_normalize(json_string_value(je), json_string_length(je), email,
                        &why)) {
      snprintf(err, errlen, "email: %s", why);
      return RESTOCK_EINVAL;
    }
  }
  const json_t *jc = json_object_get(o, "currency");
  char currency[4];
  if (!json_is_string(jc) ||
      !orders_currency(json_string_value(jc), currency)) {
    snprintf(err, errlen,
             "currency is required: an ISO 4217 code of three letters "
             "(\"EUR\")");
    return RESTOCK_EINVAL;
  }
  long long created_ms = isotime_now_ms();
  const json_t *jt = json_object_get(o, "created_at");
  if (jt && !json_is_null(jt) &&
      (!json_is_string(jt) ||
       isotime_parse(json_string_value(jt), json_string_length(jt),
                     &created_ms))) {
    snprintf(err, errlen,
             "created_at must be an ISO 8601 time "
             "(\"2026-03-01T10:00:00Z\", \"2026-03-01T11:00:00+01:00\")");
    return RESTOCK_EINVAL;
  }
  OrderLine *lines = NULL;
  size_t nlines = 0;
  int rc =
      read_lines(json_object_get(o, "items"), &lines, &nlines, err, errlen);
  if (rc) return rc;
  char created[ISOTIME_LEN], now[ISOTIME_LEN], from[ISOTIME_LEN];
  isotime_format(created_ms, created);
  isotime_now(now);
  bool inserted = false;
  rc = store_order_insert(tx, order_id, created, now, &inserted);
  c->duplicate = rc == 0 && !inserted;
  if (rc || !inserted || !email[0]) goto out;
  isotime_format(created_ms - c->unit.cfg->options.conversion_window, from);
  for (size_t i = 0; rc == 0 && i < nlines; i++) {
    long long history_id = 0;
    rc = store_conversion_candidate(tx, email, lines[i].variant_id, from,
                                    created, &history_id);
    if (rc == RESTOCK_ENOTFOUND) {
      rc = 0;
      continue;
    }
    bool marked = false;
    if (rc == 0)
      rc = store_conversion_mark(tx, history_id, created, order_id, currency,
                                 lines[i].micros, &marked);
    if (rc == 0 && marked) c->conversions++;
  }
  if (rc == 0) c->unit.fx.conversions += c->conversions;
out:
  lines_free(lines, nlines);
  return rc;
}

static void record_finish(Unit *u, int status) {
  OrderCall *c = (OrderCall *)u;
  c->done(c, status);
}

void orders_record(Domain *d, OrderCall *c) {
  c->message[0] = '\0';
  c->duplicate = false;
  c->conversions = 0;
  unit_write(d, &c->unit, record_fn, record_finish);
}

void order_call_clear(OrderCall *c) {
  json_decref(c->order);
  c->order = NULL;
}
