/* Orders and conversions: the shop's orders that restock.orders.record (a
 * connector) reports, and what restockd's notifications sold.
 *
 * An order recorded for an email that was notified of one of its variants
 * within conversion_window before the order marks that notification
 * converted (the newest such notification of each variant, each at most
 * once), with the order's amount for that variant. An order id recorded
 * twice counts once: the second time changes nothing.
 *
 * Amounts are exact: a decimal string ("49.00") or a number, kept as
 * millionths of the currency's major unit, and shown back with the
 * currency's decimals (ISO 4217: 2 for most, 0 for JPY, 3 for KWD, ...)
 * or more when the amount has more. */
#ifndef RESTOCKD_ORDERS_H
#define RESTOCKD_ORDERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "domain.h"

/* Most lines in one order. */
#define ORDERS_MAX_ITEMS 1000
/* The largest amount of one line, in major units. */
#define ORDERS_MAX_AMOUNT 1000000000LL
/* Millionths of a major unit per major unit. */
#define ORDERS_SCALE 1000000LL

typedef struct OrderCall OrderCall;
struct OrderCall {
  Unit unit;
  /* In: {order_id, email, currency, created_at, items: [{variant_id,
   * quantity, amount}]}, as restock.orders.record documents it; owned by
   * the call. */
  json_t *order;
  void (*done)(OrderCall *c, int status);
  /* Out. */
  bool duplicate;        /* the order id was recorded before */
  long long conversions; /* notifications it converted */
  char message[512];     /* why, for RESTOCK_EINVAL */
};
/* Validates and records the order, marking the notifications it converts,
 * in one unit of work. `done` gets 0, RESTOCK_EINVAL (with `message`) or a
 * store error. */
void orders_record(Domain *d, OrderCall *c);
void order_call_clear(OrderCall *c);

/* Reads an amount (a JSON string of decimal digits with at most 6 after a
 * point, or a JSON number), from 0 to ORDERS_MAX_AMOUNT, as millionths.
 * Returns 0 or RESTOCK_EINVAL. */
int orders_parse_amount(const json_t *v, long long *micros);
/* Writes `micros` millionths of `currency` as a decimal number with the
 * currency's decimals, or more when needed to be exact ("49.00", "4900",
 * "0.125"), into `out`. */
void orders_format_amount(long long micros, const char *currency, char *out,
                          size_t len);
/* True for three ASCII letters; writes them upper-cased into `out` (4
 * bytes). */
bool orders_currency(const char *s, char out[4]);

#endif
