#include "stock.h"

long long stock_quantity(const Variant *v) { return v->inventory_quantity; }

bool stock_in_stock(const Variant *v, long long quantity) {
  return !v->manage_inventory || v->allow_backorder || quantity > 0;
}
