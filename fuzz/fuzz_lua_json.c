/* lua_json_to on Lua values built from the input, and back.
 *
 * The input is a little program for a stack machine that builds values in
 * a fresh Lua state: nil, booleans, integers, floats (NaN and infinities
 * included), strings (any bytes), the JSON null, tables, fields set with
 * any key (integers, strings, floats, booleans, tables), sequences, copies
 * of values already built (so a table may hold itself) and a function.
 * Then the top value is converted, in a protected call. The conversion
 * leaves the Lua stack as it found it; a value it accepts keeps every
 * entry of every table under its own key (none dropped or merged), is
 * written by json_text as valid JSON that jansson reads back equal, and
 * pushed back into Lua and converted again, it gives the same JSON, as it
 * does pushed from that text (lua_json_push_text).
 * lua_json_text writes the same bytes as json_text of the tree, or refuses
 * the value too. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "json_text.h"
#include "lua_json.h"

/* Enough for deep nesting, few enough to keep each run short. */
#define MAX_STACK 200
#define MAX_OPS 4096

typedef struct {
  const uint8_t *p, *end;
} Reader;

static int byte(Reader *r) { return r->p < r->end ? *r->p++ : 0; }

static void bytes(Reader *r, void *out, size_t n) {
  memset(out, 0, n);
  size_t have = (size_t)(r->end - r->p);
  if (n > have) n = have;
  memcpy(out, r->p, n);
  r->p += n;
}

static int dummy(lua_State *L) { return 0; }

static void build(lua_State *L, Reader *r) {
  for (int ops = 0; r->p < r->end && ops < MAX_OPS; ops++) {
    int top = lua_gettop(L);
    int op = byte(r) % 13;
    if (!lua_checkstack(L, 2)) break; /* the C API promises only 20 slots */
    if (op <= 6 && top >= MAX_STACK) continue;
    switch (op) {
      case 0:
        lua_pushnil(L);
        break;
      case 1:
        lua_pushboolean(L, byte(r) & 1);
        break;
      case 2: {
        int64_t i;
        bytes(r, &i, (size_t)(byte(r) % 9)); /* small ones are likely */
        lua_pushinteger(L, (lua_Integer)i);
        break;
      }
      case 3: {
        double d;
        bytes(r, &d, sizeof d);
        lua_pushnumber(L, d);
        break;
      }
      case 4: {
        char s[256];
        size_t n = (size_t)byte(r);
        bytes(r, s, n);
        lua_pushlstring(L, s, n);
        break;
      }
      case 5:
        lua_pushlightuserdata(L, NULL);
        break;
      case 6:
        lua_newtable(L);
        break;
      case 7: /* [t, k, v] -> [t]: t[k] = v */
        if (top >= 3 && lua_istable(L, -3) && !lua_isnil(L, -2) &&
            !(lua_type(L, -2) == LUA_TNUMBER && !lua_isinteger(L, -2) &&
              lua_tonumber(L, -2) != lua_tonumber(L, -2)))
          lua_rawset(L, -3);
        break;
      case 8: /* [t, v] -> [t]: t[#t + 1] = v */
        if (top >= 2 && lua_istable(L, -2))
          lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        break;
      case 9: /* [t, v] -> [t]: t[small integer] = v, for sparse tables */
        if (top >= 2 && lua_istable(L, -2))
          lua_rawseti(L, -2, (lua_Integer)(byte(r) % 8) - 1);
        break;
      case 10: /* push a copy of a value built earlier (cycles) */
        if (top >= 1 && top < MAX_STACK) lua_pushvalue(L, 1 + byte(r) % top);
        break;
      case 11:
        if (top < MAX_STACK) lua_pushcfunction(L, dummy);
        break;
      case 12:
        if (top >= 1) lua_pop(L, 1);
        break;
    }
  }
}

/* json_equal, but for keys that hold a NUL byte (jansson's compares keys
 * as C strings). */
static int same(const json_t *a, const json_t *b) {
  if (json_typeof(a) != json_typeof(b)) return 0;
  if (json_is_array(a)) {
    if (json_array_size(a) != json_array_size(b)) return 0;
    for (size_t i = 0; i < json_array_size(a); i++)
      if (!same(json_array_get(a, i), json_array_get(b, i))) return 0;
    return 1;
  }
  if (json_is_object(a)) {
    if (json_object_size(a) != json_object_size(b)) return 0;
    const char *key;
    size_t len;
    json_t *value;
    json_object_keylen_foreach((json_t *)a, key, len, value) {
      const json_t *other = json_object_getn(b, key, len);
      if (!other || !same(value, other)) return 0;
    }
    return 1;
  }
  return json_equal(a, b);
}

static char err[256];
static json_t *result;

/* True when the JSON `j` holds every entry of the Lua value at `idx`, under
 * the key it was given (an integer key as its decimal string): nothing
 * was dropped or merged on the way. */
static int holds_all(lua_State *L, int idx, const json_t *j) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) return 1;
  luaL_checkstack(L, 3, "too deep");
  size_t entries = 0;
  int ok = 1;
  lua_pushnil(L);
  while (ok && lua_next(L, idx)) { /* [key, value] */
    entries++;
    const json_t *item = NULL;
    if (json_is_array(j)) {
      lua_Integer k = lua_tointeger(L, -2);
      item = k >= 1 ? json_array_get(j, (size_t)k - 1) : NULL;
    } else if (lua_type(L, -2) == LUA_TSTRING) {
      size_t len;
      const char *k = lua_tolstring(L, -2, &len);
      item = json_object_getn(j, k, len);
    } else {
      char k[32];
      int n = snprintf(k, sizeof k, "%lld", (long long)lua_tointeger(L, -2));
      item = json_object_getn(j, k, (size_t)n);
    }
    ok = item && holds_all(L, -1, item);
    lua_pop(L, 1);
  }
  if (!ok) lua_pop(L, 1); /* the key lua_next left */
  size_t size = json_is_array(j) ? json_array_size(j) : json_object_size(j);
  return ok && entries == size;
}

/* The protected part: converts the value at index 1. */
static int convert(lua_State *L) {
  int top = lua_gettop(L);
  result = lua_json_to(L, 1, err, sizeof err);
  FUZZ_CHECK(lua_gettop(L) == top);
  if (result) FUZZ_CHECK(holds_all(L, 1, result));
  /* The direct writer gives json_text's bytes of that tree, or refuses
   * too, saying why (a value with two faults may be refused for either:
   * the two walks can meet them in another order). */
  char text_err[sizeof err] = "";
  Buf b = {0};
  int rc = lua_json_text(L, 1, &b, text_err, sizeof text_err);
  FUZZ_CHECK(lua_gettop(L) == top);
  if (result) {
    char *want = json_text(result);
    FUZZ_CHECK(rc == 0 && want && b.len == strlen(want) &&
               memcmp(b.data ? b.data : "", want, b.len) == 0);
    free(want);
  } else {
    FUZZ_CHECK(rc != 0 && text_err[0] != '\0');
  }
  buf_free(&b);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  FUZZ_CHECK(L != NULL);
  Reader r = {data, data + size};
  build(L, &r);
  if (lua_gettop(L) == 0) {
    lua_close(L);
    return 0;
  }
  lua_State *T = lua_newthread(L); /* a clean stack: [value] */
  lua_pushvalue(L, -2);
  lua_xmove(L, T, 1);
  lua_pushcfunction(T, convert); /* [value, convert, value] */
  lua_pushvalue(T, 1);
  result = NULL;
  err[0] = '\0';
  int rc = lua_pcall(T, 1, 0, 0);
  if (rc != LUA_OK || !result) {
    /* Refused: it must say why (a Lua error only for a stack overflow). */
    FUZZ_CHECK(rc != LUA_OK || err[0] != '\0');
    lua_close(L);
    return 0;
  }
  json_t *j = result;
  char *text = json_text(j);
  FUZZ_CHECK(text != NULL);
  json_error_t jerr;
  json_t *back = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  /* jansson writes a key holding a NUL byte but does not read one back. */
  FUZZ_CHECK(back ? same(back, j)
                  : strstr(jerr.text, "NUL byte in object key") != NULL);
  json_decref(back);

  /* Into Lua and out again: the same JSON. */
  lua_settop(T, 0);
  FUZZ_CHECK(lua_json_push(T, j) == 0);
  lua_pushcfunction(T, convert);
  lua_pushvalue(T, 1);
  result = NULL;
  FUZZ_CHECK(lua_pcall(T, 1, 0, 0) == LUA_OK && result != NULL);
  if (!same(result, j)) {
    char *again = json_text(result);
    fprintf(stderr, "first:  %s\nsecond: %s\n", text, again ? again : "?");
    free(again);
  }
  FUZZ_CHECK(same(result, j));
  json_decref(result);

  /* From the text straight into Lua (lua_json_push_text, which hands
   * handlers their event): the same JSON again. */
  lua_settop(T, 0);
  FUZZ_CHECK(lua_json_push_text(T, text, strlen(text)) == 0);
  FUZZ_CHECK(lua_gettop(T) == 1);
  lua_pushcfunction(T, convert);
  lua_pushvalue(T, 1);
  result = NULL;
  FUZZ_CHECK(lua_pcall(T, 1, 0, 0) == LUA_OK && result != NULL);
  FUZZ_CHECK(same(result, j));
  json_decref(result);
  json_decref(j);
  free(text);
  lua_close(L);
  return 0;
}
