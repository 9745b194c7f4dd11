/* The pure parts of conversions: ISO 8601 times as shops write them, and
 * exact amounts (orders.h). */
#include <jansson.h>

#include "error.h"
#include "isotime.h"
#include "orders.h"
#include "unit.h"

static long long parse(const char *s) {
  long long ms = -1;
  return isotime_parse(s, strlen(s), &ms) == 0 ? ms : -1;
}

TEST(isotime_parse_reads_shop_times) {
  /* 2026-03-01T10:00:00Z is 1772359200 s after the epoch. */
  CHECK(parse("2026-03-01T10:00:00Z") == 1772359200000LL);
  CHECK(parse("2026-03-01T10:00:00.250Z") == 1772359200250LL);
  CHECK(parse("2026-03-01T10:00:00.123456789Z") == 1772359200123LL);
  CHECK(parse("2026-03-01T05:00:00-05:00") == 1772359200000LL);
  CHECK(parse("2026-03-01T11:00:00+0100") == 1772359200000LL);
  CHECK(parse("2026-03-01T12:00:00+02") == 1772359200000LL);
  /* WooCommerce's *_gmt times have no zone: UTC. */
  CHECK(parse("2026-03-01T10:00:00") == 1772359200000LL);
  CHECK(parse("2026-03-01 10:00:00") == 1772359200000LL);
  CHECK(parse("2026-03-01T10:00Z") == 1772359200000LL);
  CHECK(parse("2026-03-01") == 1772323200000LL);
  CHECK(parse("1970-01-01T00:00:00Z") == 0);
  CHECK(parse("2024-02-29T00:00:00Z") > 0);
  /* What stored times look like comes back the same. */
  char out[ISOTIME_LEN];
  isotime_format(1772359200250LL, out);
  CHECK_STR(out, "2026-03-01T10:00:00.250Z");
  CHECK(parse(out) == 1772359200250LL);
}

TEST(isotime_parse_refuses_what_is_not_a_time) {
  const char *bad[] = {"",
                       "yesterday",
                       "2026-3-01",
                       "2026-13-01",
                       "2026-02-30",
                       "2025-02-29",
                       "2026-03-01T24:00:00Z",
                       "2026-03-01T10:60:00Z",
                       "2026-03-01T10:00:00+25:00",
                       "2026-03-01T10:00:00.Z",
                       "2026-03-01T10:00:00Zjunk",
                       "2026-03-01T10",
                       "0999-01-01"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    long long ms = 0;
    CHECK(isotime_parse(bad[i], strlen(bad[i]), &ms) == RESTOCK_EINVAL);
  }
}

static long long amount(json_t *v) {
  long long micros = -1;
  int rc = orders_parse_amount(v, &micros);
  json_decref(v);
  return rc ? -1 : micros;
}

TEST(orders_amounts_are_exact) {
  CHECK(amount(json_string("49.00")) == 49000000);
  CHECK(amount(json_string("0.1")) == 100000);
  CHECK(amount(json_string("19.999999")) == 19999999);
  CHECK(amount(json_string("0")) == 0);
  CHECK(amount(json_integer(4900)) == 4900000000LL);
  /* A binary fraction is the decimal the shop meant. */
  CHECK(amount(json_real(49.99)) == 49990000);
  CHECK(amount(json_real(0.1 + 0.2)) == 300000);
  CHECK(amount(json_string("1000000000")) == 1000000000000000LL);
  /* Refused: more than 6 decimals, signs, exponents, blanks, too much. */
  CHECK(amount(json_string("1.2345678")) == -1);
  CHECK(amount(json_string("-1")) == -1);
  CHECK(amount(json_string("+1")) == -1);
  CHECK(amount(json_string("1e3")) == -1);
  CHECK(amount(json_string(" 1")) == -1);
  CHECK(amount(json_string("1.")) == -1);
  CHECK(amount(json_string(".5")) == -1);
  CHECK(amount(json_string("1000000001")) == -1);
  CHECK(amount(json_integer(-1)) == -1);
  CHECK(amount(json_real(-0.5)) == -1);
  CHECK(amount(json_true()) == -1);
}

TEST(orders_amounts_show_the_currency_decimals) {
  char out[64];
  orders_format_amount(49000000, "EUR", out, sizeof out);
  CHECK_STR(out, "49.00");
  orders_format_amount(49500000, "USD", out, sizeof out);
  CHECK_STR(out, "49.50");
  orders_format_amount(4900000000LL, "JPY", out, sizeof out);
  CHECK_STR(out, "4900");
  orders_format_amount(1500000, "KWD", out, sizeof out);
  CHECK_STR(out, "1.500");
  /* More decimals than the currency has are kept: nothing is rounded. */
  orders_format_amount(125000, "EUR", out, sizeof out);
  CHECK_STR(out, "0.125");
  orders_format_amount(4900000001LL, "JPY", out, sizeof out);
  CHECK_STR(out, "4900.000001");
  orders_format_amount(0, "EUR", out, sizeof out);
  CHECK_STR(out, "0.00");
}

TEST(orders_currency_codes) {
  char c[4];
  CHECK(orders_currency("eur", c));
  CHECK_STR(c, "EUR");
  CHECK(!orders_currency("EURO", c));
  CHECK(!orders_currency("E1R", c));
  CHECK(!orders_currency("", c));
}
