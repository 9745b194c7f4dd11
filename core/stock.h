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

#endif
