#include "stock.h"

#include <limits.h>
#include <math.h>

long long stock_quantity(const Variant *v) { return v->inventory_quantity; }

bool stock_in_stock(const Variant *v, long long quantity) {
  return !v->manage_inventory || v->allow_backorder || quantity > 0;
}

bool stock_restocked(long long quantity, long long inventory_required) {
  return quantity > inventory_required;
}

long long stock_notify_limit(long long quantity, double notify_per_unit) {
  if (notify_per_unit <= 0) return LLONG_MAX;
  if (quantity <= 0) return 0;
  /* The epsilon keeps 30 * 0.1 (3.0000000000000004 in binary) at 3. */
  double n = ceil((double)quantity * notify_per_unit - 1e-9);
  return n >= (double)LLONG_MAX ? LLONG_MAX : (long long)n;
}
