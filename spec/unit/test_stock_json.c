#include <stdlib.h>

#include "api.h"
#include "lua_host.h"
#include "stock.h"
#include "unit.h"

TEST(stock_in_stock_rule) {
  Variant v = {.manage_inventory = true};
  CHECK(!stock_in_stock(&v, 0));
  CHECK(!stock_in_stock(&v, -3));
  CHECK(stock_in_stock(&v, 1));
  v.allow_backorder = true;
  CHECK(stock_in_stock(&v, 0));
  v.allow_backorder = false;
  v.manage_inventory = false;
  CHECK(stock_in_stock(&v, 0));
}

TEST(stock_quantity_without_levels) {
  Variant v = {.inventory_quantity = 7};
  CHECK(stock_quantity(&v) == 7);
}

TEST(api_valid_id_bounds) {
  CHECK(api_valid_id("variant_01"));
  CHECK(api_valid_id("var 1"));
  CHECK(!api_valid_id(""));
  CHECK(!api_valid_id("a\nb"));
  CHECK(!api_valid_id("\xff\xfe"));
  char longid[300];
  memset(longid, 'x', 256);
  longid[256] = '\0';
  CHECK(!api_valid_id(longid));
  longid[255] = '\0';
  CHECK(api_valid_id(longid));
}

TEST(variant_json_has_quantity_and_nulls) {
  Variant v = {.id = "v1",
               .inventory_quantity = 4,
               .manage_inventory = true,
               .created_at = "c",
               .updated_at = "u"};
  json_t *j = api_variant_json(&v);
  CHECK(json_integer_value(json_object_get(j, "quantity")) == 4);
  CHECK(json_is_null(json_object_get(j, "sku")));
  CHECK(json_is_true(json_object_get(j, "manage_inventory")));
  CHECK(json_is_false(json_object_get(j, "allow_backorder")));
  CHECK_STR(json_string_value(json_object_get(j, "id")), "v1");
  json_decref(j);
}

TEST(options_json_lists_every_option) {
  Options o = {.batch_size = 1000, .store_cors = NULL};
  json_t *j = options_to_json(&o);
  const char *keys[] = {"trigger_delay",   "inventory_required",
                        "batch_size",      "max_attempts",
                        "handler_timeout", "notify_per_unit",
                        "notify_interval", "subscribe_rate_limit",
                        "trust_proxy",     "store_cors"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    CHECK(json_object_get(j, keys[i]) != NULL);
  CHECK(json_integer_value(json_object_get(j, "batch_size")) == 1000);
  json_decref(j);
}
