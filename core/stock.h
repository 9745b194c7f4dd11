/* The stock rule of contract section 4, as pure functions. */
#ifndef RESTOCKD_STOCK_H
#define RESTOCKD_STOCK_H

#include <stdbool.h>

#include "store.h"

/* A variant's available quantity (without inventory levels: its
 * inventory_quantity). */
long long stock_quantity(const Variant *v);
/* In stock: inventory not managed, backorders allowed, or quantity > 0.
 * Only a variant that is not in stock can be subscribed to. */
bool stock_in_stock(const Variant *v, long long quantity);

/* Restocked within a scope: quantity above inventory_required (strictly, as
 * Medusa does). */
bool stock_restocked(long long quantity, long long inventory_required);
/* How many subscribers of a scope one check notifies: all (LLONG_MAX) when
 * notify_per_unit is 0, else ceil(quantity * notify_per_unit), at least 0. */
long long stock_notify_limit(long long quantity, double notify_per_unit);

#endif
