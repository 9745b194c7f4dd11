/* json_text writes the same bytes as json_dumps(JSON_COMPACT|JSON_ENCODE_ANY),
 * which the rest of the server and its specs were written against. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "json_text.h"
#include "unit.h"

static void check_same(json_t *v) {
  char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  char *got = json_text(v);
  CHECK_STR(got, want);
  free(want);
  free(got);
  json_decref(v);
}

TEST(json_text_scalars_match_jansson) {
  check_same(json_null());
  check_same(json_true());
  check_same(json_false());
  check_same(json_integer(0));
  check_same(json_integer(-1));
  check_same(json_integer(INT64_MAX));
  check_same(json_integer(INT64_MIN));
  check_same(json_real(0.1));
  check_same(json_real(-2.5e300));
  check_same(json_real(3.0));
  check_same(json_string(""));
  check_same(json_string("plain"));
  check_same(json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6 / \x7f"));
  check_same(json_stringn("nul\0inside", 10));
}

TEST(json_text_escapes_every_control_byte_like_jansson) {
  char all[128];
  for (int i = 0; i < 127; i++) all[i] = (char)(i + 1);
  all[127] = '\0';
  check_same(json_string(all));
  check_same(json_pack("{s:s}", "k\"e\\y\n", "\"quoted\"\t\\"));
}

TEST(json_text_nested_values_keep_insertion_order) {
  check_same(json_object());
  check_same(json_array());
  check_same(json_pack("{s:{s:s, s:o, s:s, s:s}}", "restock_notification",
                       "variant_id", "v1", "sales_channel_id", json_null(),
                       "email", "a@b.co", "created_at", "2026-01-01"));
  check_same(json_pack("{s:[i,s,[],{},{s:[b,n,f]}], s:i, s:s}", "z", 1, "x",
                       "y", true, 1.5, "a", 2, "m", "n"));
}

TEST(json_text_refuses_nesting_past_its_limit) {
  json_t *root = json_array(), *at = root;
  for (int i = 0; i < JSON_TEXT_MAX_DEPTH; i++) {
    json_t *next = json_array();
    json_array_append_new(at, next);
    at = next;
  }
  CHECK(json_text(root) == NULL);
  json_decref(root);
}
