#include "error.h"
#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <stdlib.h>

#include "json_text.h"
#include "lua_json.h"
#include "stock.h"
#include "token.h"
#include "unit.h"

TEST(restock_rule_is_strictly_greater) {
  CHECK(!stock_restocked(0, 0));
  CHECK(stock_restocked(1, 0));
  CHECK(!stock_restocked(5, 5));
  CHECK(stock_restocked(6, 5));
  CHECK(!stock_restocked(-2, 0));
}

TEST(notify_limit_rounds_up_and_defaults_to_all) {
  CHECK(stock_notify_limit(10, 0) == LLONG_MAX);
  CHECK(stock_notify_limit(2, 0.5) == 1);
  CHECK(stock_notify_limit(3, 0.5) == 2);
  CHECK(stock_notify_limit(30, 0.1) == 3); /* not 4: binary rounding */
  CHECK(stock_notify_limit(10, 0.3) == 3);
  CHECK(stock_notify_limit(1, 0.01) == 1);
  CHECK(stock_notify_limit(4, 2) == 8);
  CHECK(stock_notify_limit(0, 2) == 0);
  CHECK(stock_notify_limit(-5, 2) == 0);
}

static const unsigned char key[TOKEN_KEY_LEN] =
    "0123456789abcdef0123456789abcde";

TEST(token_round_trip) {
  char t[TOKEN_LEN + 1];
  token_make(key, TOKEN_UNSUBSCRIBE, 42, t);
  CHECK(strlen(t) == TOKEN_LEN);
  long long id = 0;
  CHECK(token_parse(key, t, TOKEN_UNSUBSCRIBE, &id) == 0);
  CHECK(id == 42);
  token_make(key, TOKEN_UNSUBSCRIBE, 9007199254740993LL, t);
  CHECK(token_parse(key, t, TOKEN_UNSUBSCRIBE, &id) == 0);
  CHECK(id == 9007199254740993LL);
}

TEST(token_is_opaque_and_bound_to_its_row) {
  char a[TOKEN_LEN + 1], b[TOKEN_LEN + 1];
  token_make(key, TOKEN_UNSUBSCRIBE, 1, a);
  token_make(key, TOKEN_UNSUBSCRIBE, 2, b);
  /* Neighbouring ids share no visible structure: the block is encrypted. */
  size_t same = 0;
  for (int i = 0; i < 21; i++) same += a[i] == b[i];
  CHECK(same < 10);
  /* Deterministic: one token per row and purpose. */
  char again[TOKEN_LEN + 1];
  token_make(key, TOKEN_UNSUBSCRIBE, 1, again);
  CHECK_STR(a, again);
}

TEST(token_refuses_forgery_and_other_purposes) {
  char t[TOKEN_LEN + 1];
  token_make(key, TOKEN_UNSUBSCRIBE, 7, t);
  long long id = -1;
  /* Another key. */
  unsigned char other[TOKEN_KEY_LEN];
  memcpy(other, key, sizeof other);
  other[0] ^= 1;
  CHECK(token_parse(other, t, TOKEN_UNSUBSCRIBE, &id) < 0);
  /* Another purpose. */
  CHECK(token_parse(key, t, TOKEN_CONFIRM, &id) < 0);
  CHECK(token_parse(key, t, TOKEN_MANAGE, &id) < 0);
  char c[TOKEN_LEN + 1];
  token_make(key, TOKEN_CONFIRM, 7, c);
  CHECK(token_parse(key, c, TOKEN_UNSUBSCRIBE, &id) < 0);
  /* Canonical: every single character changed is refused, whichever
   * character it becomes (no unused bits to flip). */
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  int accepted = 0;
  for (int i = 0; i < TOKEN_LEN; i++) {
    char saved = t[i];
    for (int k = 0; alphabet[k]; k++) {
      if (alphabet[k] == saved) continue;
      t[i] = alphabet[k];
      if (token_parse(key, t, TOKEN_UNSUBSCRIBE, &id) == 0) accepted++;
    }
    t[i] = saved;
  }
  CHECK(accepted == 0);
  /* Cut short, made longer, or not base64url at all. */
  char shorter[TOKEN_LEN + 1];
  memcpy(shorter, t, TOKEN_LEN - 1);
  shorter[TOKEN_LEN - 1] = '\0';
  CHECK(token_parse(key, shorter, TOKEN_UNSUBSCRIBE, &id) < 0);
  char longer[TOKEN_LEN + 2];
  snprintf(longer, sizeof longer, "%sA", t);
  CHECK(token_parse(key, longer, TOKEN_UNSUBSCRIBE, &id) < 0);
  CHECK(token_parse(key, "", TOKEN_UNSUBSCRIBE, &id) < 0);
  CHECK(token_parse(key, "abc", TOKEN_UNSUBSCRIBE, &id) < 0);
  char bad[TOKEN_LEN + 1];
  memcpy(bad, t, sizeof bad);
  bad[3] = '=';
  CHECK(token_parse(key, bad, TOKEN_UNSUBSCRIBE, &id) < 0);
  CHECK(id == -1);
  CHECK(token_parse(key, t, TOKEN_UNSUBSCRIBE, &id) == 0 && id == 7);
}

TEST(token_key_depends_on_secret) {
  unsigned char a[TOKEN_KEY_LEN], b[TOKEN_KEY_LEN];
  token_key("one", a);
  token_key("two", b);
  CHECK(memcmp(a, b, TOKEN_KEY_LEN) != 0);
}

/* Runs `chunk`, converts its result to JSON and back as text. */
static char *lua_to_json_text(const char *chunk, char *err, size_t errlen) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_pushlightuserdata(L, NULL);
  lua_setglobal(L, "null");
  if (luaL_dostring(L, chunk) != LUA_OK) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  json_t *j = lua_json_to(L, -1, err, errlen);
  lua_close(L);
  if (!j) return NULL;
  char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
  json_decref(j);
  return text;
}

TEST(lua_json_encodes_tables) {
  char err[128];
  char *s = lua_to_json_text("return {1, 2, 'x', true}", err, sizeof err);
  CHECK_STR(s, "[1,2,\"x\",true]");
  free(s);
  s = lua_to_json_text("return {a = 1.5, b = {c = null}, [3] = 'n'}", err,
                       sizeof err);
  CHECK_STR(s, "{\"3\":\"n\",\"a\":1.5,\"b\":{\"c\":null}}");
  free(s);
  s = lua_to_json_text("return {}", err, sizeof err);
  CHECK_STR(s, "{}");
  free(s);
  s = lua_to_json_text("return {[1] = 'a', [3] = 'c'}", err, sizeof err);
  CHECK_STR(s, "{\"1\":\"a\",\"3\":\"c\"}"); /* sparse: an object */
  free(s);
}

TEST(lua_json_refuses_what_json_cannot_hold) {
  char err[128] = "";
  CHECK(lua_to_json_text("return {f = print}", err, sizeof err) == NULL);
  CHECK(strstr(err, "function") != NULL);
  CHECK(lua_to_json_text("return 0/0", err, sizeof err) == NULL);
  CHECK(lua_to_json_text("local t = {} t.t = t return t", err, sizeof err) ==
        NULL);
  CHECK(lua_to_json_text("return '\\xff'", err, sizeof err) == NULL);
}

/* An integer key becomes a string: next to the same string key, one of the
 * two values would be dropped without a word. */
TEST(lua_json_refuses_clashing_keys) {
  char err[128] = "";
  CHECK(lua_to_json_text("return {[1] = 1, ['1'] = 2}", err, sizeof err) ==
        NULL);
  CHECK(strstr(err, "both the key 1 and the key \"1\"") != NULL);
  err[0] = '\0';
  CHECK(lua_to_json_text("return {x = {[-7] = true, ['-7'] = false}}", err,
                         sizeof err) == NULL);
  CHECK(strstr(err, "-7") != NULL);
  /* Keys that only look alike are not a clash. */
  char *s = lua_to_json_text("return {[1] = 1, ['01'] = 2, [' 1'] = 3}", err,
                             sizeof err);
  CHECK_STR(s, "{\" 1\":3,\"01\":2,\"1\":1}");
  free(s);
}

/* A string key holding a NUL byte is kept whole, not cut at the NUL (where
 * it would clash with the shorter key). */
TEST(lua_json_keeps_keys_with_nul) {
  char err[128] = "";
  char *s = lua_to_json_text("return {['a\\0b'] = 1, a = 2}", err, sizeof err);
  CHECK_STR(s, "{\"a\":2,\"a\\u0000b\":1}");
  free(s);
}

/* Found by fuzz_lua_json: a key with a NUL byte came back from JSON into
 * Lua cut at the NUL, so a value encoded and decoded changed its key. */
TEST(lua_json_push_keeps_keys_with_nul) {
  lua_State *L = luaL_newstate();
  json_t *j = json_object();
  json_object_setn_new(j, "a\0b", 3, json_integer(1));
  json_object_set_new(j, "a", json_integer(2));
  CHECK(lua_json_push(L, j) == 0);
  lua_pushlstring(L, "a\0b", 3);
  lua_rawget(L, -2);
  CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "a");
  CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 2);
  lua_pop(L, 2);
  json_decref(j);
  lua_close(L);
}

TEST(lua_json_decodes_into_lua) {
  lua_State *L = luaL_newstate();
  json_t *j = json_loads(
      "{\"emails\":[\"a@b.co\",\"c@d.co\"],\"n\":3,"
      "\"x\":null}",
      0, NULL);
  CHECK(lua_json_push(L, j) == 0);
  lua_getfield(L, -1, "emails");
  CHECK(lua_rawlen(L, -1) == 2);
  lua_rawgeti(L, -1, 2);
  CHECK_STR(lua_tostring(L, -1), "c@d.co");
  lua_pop(L, 2);
  lua_getfield(L, -1, "n");
  CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 3);
  lua_pop(L, 1);
  lua_getfield(L, -1, "x");
  CHECK(lua_islightuserdata(L, -1) && lua_touserdata(L, -1) == NULL);
  lua_pop(L, 2);
  json_decref(j);
  /* Too deep: refused without pushing anything. */
  json_t *deep = json_array();
  for (int i = 0; i < 100; i++) {
    json_t *outer = json_array();
    json_array_append_new(outer, deep);
    deep = outer;
  }
  int top = lua_gettop(L);
  CHECK(lua_json_push(L, deep) == RESTOCK_EINVAL);
  CHECK(lua_gettop(L) == top);
  json_decref(deep);
  lua_close(L);
}

/* lua_json_text writes what json_text of lua_json_to's tree would, byte for
 * byte, and refuses what it refuses with the same sentence. */
TEST(lua_json_text_matches_the_tree) {
  static const char *const chunks[] = {
      "return nil",
      "return true",
      "return false",
      "return 0",
      "return -9007199254740993",
      "return math.maxinteger",
      "return math.mininteger",
      "return 1.5",
      "return 0.1",
      "return -0.0",
      "return 1e300",
      "return 2^53",
      "return 'a\"b\\\\c\\n\\t\\0\\1\\31'",
      "return 'caf\\u{e9} \\u{1F600} \\u{2028}'",
      "return null",
      "return {}",
      "return {1, 2, 'x', true, null, {}}",
      "return {1, nil, 3}",
      "return {a = 1, b = {c = {d = {e = 'f'}}}, [7] = 'n'}",
      "return {['a\\0b'] = 1, a = 2, ['\\u{e9}'] = 3}",
      "local t = {} for i = 1, 200 do t[i] = {id = i, e = 'x' .. i} end "
      "return t",
      "local t = {} for i = 1, 63 do t = {t} end return t",
      /* Refused, each with its sentence. */
      "return {f = print}",
      "return 0/0",
      "return {x = 1/0}",
      "local t = {} t.t = t return t",
      "local t = {} for i = 1, 64 do t = {t} end return t",
      "return '\\xff'",
      "return {['\\xc3'] = 1}",
      "return {[1] = 1, ['1'] = 2}",
      "return {x = {[-7] = true, ['-7'] = false}}",
      "return {[true] = 1}",
      "return {[1.5] = 1}",
      "return io.stdout",
      "return coroutine.create(print)",
  };
  for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushlightuserdata(L, NULL);
    lua_setglobal(L, "null");
    CHECK(luaL_dostring(L, chunks[i]) == LUA_OK);
    int top = lua_gettop(L);
    char tree_err[128] = "", text_err[128] = "";
    json_t *j = lua_json_to(L, -1, tree_err, sizeof tree_err);
    char *want = j ? json_text(j) : NULL;
    json_decref(j);
    CHECK(lua_gettop(L) == top);
    Buf b = {0};
    int rc = lua_json_text(L, -1, &b, text_err, sizeof text_err);
    CHECK(lua_gettop(L) == top);
    if (want) {
      buf_puts(&b, ""); /* data set even for an empty text */
      CHECK(rc == 0);
      CHECK_STR(rc == 0 ? b.data : "(refused)", want);
    } else {
      CHECK(rc == RESTOCK_EINVAL);
      CHECK_STR(text_err, tree_err);
    }
    if (rc != (want ? 0 : RESTOCK_EINVAL)) fprintf(stderr, "  %s\n", chunks[i]);
    free(want);
    buf_free(&b);
    lua_close(L);
  }
}

/* The JSON of the Lua value on top (popped), keys sorted, or NULL. */
static char *top_as_json(lua_State *L) {
  char err[128];
  json_t *j = lua_json_to(L, -1, err, sizeof err);
  lua_pop(L, 1);
  if (!j) return NULL;
  char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
  json_decref(j);
  return text;
}

/* lua_json_push_text gives handlers what jansson and lua_json_push gave
 * them: the same tables, integers kept integers, null the light userdata
 * NULL, and the same refusals. */
TEST(lua_json_push_text_matches_jansson) {
  static const char *const docs[] = {
      "{\"variant_id\":\"v1\",\"emails\":[\"a@b.co\",\"c@d.co\"],"
      "\"subscribers\":[{\"email\":\"a@b.co\",\"quantity\":2},"
      "{\"email\":\"c@d.co\",\"locale\":\"de\"}]}",
      "[]",
      "{}",
      "[[],{},[[]]]",
      "0",
      "-7",
      "9223372036854775807",
      "-9223372036854775808",
      "[-9223372036854775808,9223372036854775807,-0]",
      "1.7976931348623157e+308",
      "1e-400",
      "0.000000000000000000000000000000000000000000000000000000000000000000001",
      "1.5",
      "1e2",
      "-0.25",
      "true",
      "false",
      "null",
      "\"\\u00e9\\n\\\"x\"",
      "{\"a\":1,\"a\":2}",
      "[1,\"two\",null,true,{\"k\":[3.25]}]",
      " { \"sp\" : [ 1 , 2 ] } ",
  };
  lua_State *L = luaL_newstate();
  for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
    json_t *j = json_loads(docs[i], JSON_DECODE_ANY, NULL);
    CHECK(j != NULL);
    CHECK(lua_json_push(L, j) == 0);
    json_decref(j);
    char *want = top_as_json(L);
    CHECK(lua_json_push_text(L, docs[i], strlen(docs[i])) == 0);
    CHECK(lua_gettop(L) == 1);
    char *got = top_as_json(L);
    CHECK_STR(got, want);
    free(want);
    free(got);
  }
  /* Integers stay integers, others floats, null the light userdata. */
  const char *typed = "[3,3.0,1e2,null]";
  CHECK(lua_json_push_text(L, typed, strlen(typed)) == 0);
  lua_rawgeti(L, -1, 1);
  CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 3);
  lua_rawgeti(L, -2, 2);
  CHECK(lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1));
  lua_rawgeti(L, -3, 3);
  CHECK(!lua_isinteger(L, -1) && lua_tonumber(L, -1) == 100.0);
  lua_rawgeti(L, -4, 4);
  CHECK(lua_islightuserdata(L, -1) && lua_touserdata(L, -1) == NULL);
  lua_settop(L, 0);
  /* Not one JSON value: refused, nothing pushed. */
  static const char *const bad[] = {
      "",
      "{",
      "[1,]",
      "{\"a\":}",
      "[1] [2]",
      "nul",
      "[\"\xff\"]",
      "{\"a\":1}x",
      "[1,2",
      "99999999999999999999",
      "-9223372036854775809",
      "1e309",
      "[-1e400]",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK(lua_json_push_text(L, bad[i], strlen(bad[i])) == RESTOCK_EINVAL);
    CHECK(lua_gettop(L) == 0);
  }
  /* As deep as lua_json_push takes, and one level more refused. */
  char deep[2 * (LUA_JSON_MAX_DEPTH + 1) + 1];
  for (int n = LUA_JSON_MAX_DEPTH; n <= LUA_JSON_MAX_DEPTH + 1; n++) {
    memset(deep, '[', (size_t)n);
    memset(deep + n, ']', (size_t)n);
    deep[2 * n] = '\0';
    int rc = lua_json_push_text(L, deep, (size_t)(2 * n));
    json_t *j = json_loads(deep, 0, NULL);
    int want = lua_json_push(L, j);
    json_decref(j);
    lua_settop(L, 0);
    CHECK(rc == (n == LUA_JSON_MAX_DEPTH ? 0 : RESTOCK_ERANGE));
    CHECK(want == (n == LUA_JSON_MAX_DEPTH ? 0 : RESTOCK_EINVAL));
  }
  lua_close(L);
}
