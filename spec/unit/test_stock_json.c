#include <stdlib.h>

#include "api.h"
#include "config.h"
#include "error.h"
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

TEST(domain_valid_id_bounds) {
  CHECK(domain_valid_id("variant_01"));
  CHECK(domain_valid_id("var 1"));
  CHECK(!domain_valid_id(""));
  CHECK(!domain_valid_id("a\nb"));
  CHECK(!domain_valid_id("\xff\xfe"));
  char longid[300];
  memset(longid, 'x', 256);
  longid[256] = '\0';
  CHECK(!domain_valid_id(longid));
  longid[255] = '\0';
  CHECK(domain_valid_id(longid));
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
  Options o;
  config_defaults(&o);
  json_t *j = config_options_json(&o);
  const char *keys[] = {"trigger_delay",   "inventory_required",
                        "batch_size",      "max_attempts",
                        "handler_timeout", "notify_per_unit",
                        "notify_interval", "subscribe_rate_limit",
                        "trust_proxy",     "store_cors",
                        "durability"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    CHECK(json_object_get(j, keys[i]) != NULL);
  CHECK(json_object_size(j) == config_noptions);
  CHECK(json_integer_value(json_object_get(j, "batch_size")) == 1000);
  CHECK_STR(json_string_value(json_object_get(j, "durability")), "process");
  json_decref(j);
}

TEST(options_are_bounded_by_their_table) {
  Options o;
  config_defaults(&o);
  char err[256];
  const OptionSpec *td = config_find("trigger_delay");
  CHECK(td != NULL);
  OptionValue huge = {.type = OV_INT, .i = 9223372036854775807LL};
  CHECK(config_apply(&o, td, &huge, err, sizeof err) == RESTOCK_EINVAL);
  CHECK(strstr(err, "trigger_delay") != NULL);
  CHECK(o.trigger_delay == 0);
  OptionValue neg = {.type = OV_INT, .i = -1};
  CHECK(config_apply(&o, td, &neg, err, sizeof err) == RESTOCK_EINVAL);
  OptionValue ok = {.type = OV_INT, .i = 1500};
  CHECK(config_apply(&o, td, &ok, err, sizeof err) == 0);
  CHECK(o.trigger_delay == 1500);
  /* Every int option refuses math.maxinteger: no sum with a time can
   * overflow. */
  for (size_t i = 0; i < config_noptions; i++)
    if (config_options[i].type == OPT_INT)
      CHECK(config_apply(&o, &config_options[i], &huge, err, sizeof err) ==
            RESTOCK_EINVAL);
  const OptionSpec *d = config_find("durability");
  OptionValue full = {.type = OV_STRING, .s = "full", .len = 4};
  CHECK(config_apply(&o, d, &full, err, sizeof err) == 0);
  CHECK(o.durability == DURABILITY_FULL);
  OptionValue bad = {.type = OV_STRING, .s = "always", .len = 6};
  CHECK(config_apply(&o, d, &bad, err, sizeof err) == RESTOCK_EINVAL);
  CHECK(strstr(err, "\"process\" or \"full\"") != NULL);
  CHECK(config_find("nope") == NULL);
  config_options_clear(&o);
}
