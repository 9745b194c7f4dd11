#include "lua_json.h"

#include "error.h"
#include "json_text.h"
#include "utf8.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

/* True when `v` nests no deeper than `left` more levels. */
static int depth_ok(const json_t *v, int left) {
  if (!json_is_object(v) && !json_is_array(v)) return 1;
  if (left == 0) return 0;
  if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++)
      if (!depth_ok(json_array_get(v, i), left - 1)) return 0;
    return 1;
  }
  const char *key;
  const json_t *value;
  json_object_foreach((json_t *)v, key, value) {
    if (!depth_ok(value, left - 1)) return 0;
  }
  return 1;
}

static void push(lua_State *L, const json_t *v) {
  luaL_checkstack(L, 3, "JSON nested too deeply");
  switch (json_typeof(v)) {
    case JSON_OBJECT: {
      lua_createtable(L, 0, (int)json_object_size(v)); /* [t] */
      const char *key;
      size_t key_len;
      json_t *value;
      /* By length: a key may hold a NUL byte (lua_json_to keeps them). */
      json_object_keylen_foreach((json_t *)v, key, key_len, value) {
        lua_pushlstring(L, key, key_len);
        push(L, value);
        lua_rawset(L, -3);
      }
      break;
    }
    case JSON_ARRAY: {
      size_t n = json_array_size(v);
      lua_createtable(L, (int)n, 0);
      for (size_t i = 0; i < n; i++) {
        push(L, json_array_get(v, i));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      break;
    }
    case JSON_STRING:
      lua_pushlstring(L, json_string_value(v), json_string_length(v));
      break;
    case JSON_INTEGER:
      lua_pushinteger(L, (lua_Integer)json_integer_value(v));
      break;
    case JSON_REAL:
      lua_pushnumber(L, json_real_value(v));
      break;
    case JSON_TRUE:
      lua_pushboolean(L, 1);
      break;
    case JSON_FALSE:
      lua_pushboolean(L, 0);
      break;
    case JSON_NULL:
      lua_pushlightuserdata(L, NULL);
      break;
  }
}

int lua_json_push(lua_State *L, const json_t *v) {
  if (!depth_ok(v, LUA_JSON_MAX_DEPTH)) return RESTOCK_EINVAL;
  push(L, v);
  return 0;
}

/* The containers lua_json_push_text has open: each is a table on the
 * stack, an object's with the key of the value being read above it. */
typedef struct {
  lua_State *L;
  int depth;
  bool too_deep;
  bool object[LUA_JSON_MAX_DEPTH];
  lua_Integer count[LUA_JSON_MAX_DEPTH]; /* an array's values so far */
} Decode;

/* Stores the value on top of the stack in the container below it. */
static int decoded(Decode *d) {
  if (d->depth > 0) {
    int top = d->depth - 1;
    if (d->object[top])
      lua_rawset(d->L, -3);
    else
      lua_rawseti(d->L, -2, ++d->count[top]);
  }
  return 1;
}

static int open_container(Decode *d, bool object) {
  if (d->depth == LUA_JSON_MAX_DEPTH || !lua_checkstack(d->L, 3)) {
    d->too_deep = true;
    return 0; /* stops the parse */
  }
  lua_createtable(d->L, 0, 0);
  d->object[d->depth] = object;
  d->count[d->depth] = 0;
  d->depth++;
  return 1;
}

static int close_container(void *ctx) {
  Decode *d = ctx;
  d->depth--;
  return decoded(d);
}

static int on_null(void *ctx) {
  Decode *d = ctx;
  lua_pushlightuserdata(d->L, NULL);
  return decoded(d);
}
static int on_boolean(void *ctx, int b) {
  Decode *d = ctx;
  lua_pushboolean(d->L, b);
  return decoded(d);
}
/* A number, read as jansson reads one: an integer without a fraction or
 * an exponent (refused past long long's range), else a double (refused
 * when it overflows). yajl's own integer reading refuses the smallest long
 * long, -9223372036854775808, as an overflow: a Lua event holding
 * math.mininteger would never have reached its handler (fuzz_lua_json
 * found it). */
static int on_number(void *ctx, const char *s, size_t len) {
  Decode *d = ctx;
  char small[64];
  char *text = len < sizeof small ? small : malloc(len + 1);
  if (!text) return 0;
  memcpy(text, s, len);
  text[len] = '\0';
  int ok = 1;
  errno = 0;
  if (!strpbrk(text, ".eE")) {
    long long i = strtoll(text, NULL, 10);
    if (errno == ERANGE)
      ok = 0;
    else
      lua_pushinteger(d->L, (lua_Integer)i);
  } else {
    double x = strtod(text, NULL);
    if (errno == ERANGE && (x == HUGE_VAL || x == -HUGE_VAL))
      ok = 0;
    else
      lua_pushnumber(d->L, x);
  }
  if (text != small) free(text);
  return ok ? decoded(d) : 0;
}
static int on_string(void *ctx, const unsigned char *s, size_t len) {
  Decode *d = ctx;
  lua_pushlstring(d->L, (const char *)s, len);
  return decoded(d);
}
static int on_key(void *ctx, const unsigned char *s, size_t len) {
  Decode *d = ctx;
  lua_pushlstring(d->L, (const char *)s, len);
  return 1;
}
static int on_start_map(void *ctx) { return open_container(ctx, true); }
static int on_start_array(void *ctx) { return open_container(ctx, false); }

static const yajl_callbacks decode_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = close_container,
    .yajl_start_array = on_start_array,
    .yajl_end_array = close_container,
};

int lua_json_push_text(lua_State *L, const char *text, size_t len) {
  int base = lua_gettop(L);
  if (!lua_checkstack(L, 3)) return RESTOCK_ERANGE;
  Decode d = {.L = L};
  yajl_handle h = yajl_alloc(&decode_callbacks, NULL, &d);
  if (!h) return RESTOCK_EINVAL;
  /* Strict JSON, as jansson reads it: one value, UTF-8 checked, nothing
   * after it (yajl's defaults). */
  yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
  if (st == yajl_status_ok) st = yajl_complete_parse(h);
  yajl_free(h);
  if (st == yajl_status_ok && d.depth == 0 && lua_gettop(L) == base + 1)
    return 0;
  lua_settop(L, base);
  return d.too_deep ? RESTOCK_ERANGE : RESTOCK_EINVAL;
}

/* Returns n > 0 when the table at `idx` is a sequence 1..n, else 0. */
static lua_Integer array_length(lua_State *L, int idx) {
  lua_Integer count = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    lua_Integer k = lua_tointeger(L, -1);
    if (k < 1) {
      lua_pop(L, 1);
      return 0;
    }
    if (k > max) max = k;
    count++;
  }
  return count == max ? max : 0;
}

/* The JSON key of the table key below the value on top of the stack (an
 * integer key as its decimal string, written in keybuf). Returns 0, or
 * RESTOCK_EINVAL with `err` for a key of another type. */
static int table_key(lua_State *L, char keybuf[32], const char **key,
                     size_t *key_len, char *err, size_t errlen) {
  if (lua_type(L, -2) == LUA_TSTRING) {
    *key = lua_tolstring(L, -2, key_len); /* may hold a NUL */
    return 0;
  }
  if (lua_isinteger(L, -2)) {
    int w = snprintf(keybuf, 32, "%lld", (long long)lua_tointeger(L, -2));
    *key = keybuf;
    *key_len = (size_t)w;
    return 0;
  }
  snprintf(err, errlen, "cannot encode a table key of type %s",
           luaL_typename(L, -2));
  return RESTOCK_EINVAL;
}

/* An integer key is written as a string, so {[1] = 1, ["1"] = 2} would give
 * "1" twice and lose one value: it is refused, with this sentence. Only an
 * integer and its decimal string can meet. */
static void clash(const char *key, char *err, size_t errlen) {
  snprintf(err, errlen,
           "cannot encode a table with both the key %.24s and the key "
           "\"%.24s\"",
           key, key);
}

static json_t *to(lua_State *L, int idx, int depth, char *err, size_t errlen) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return json_null();
    case LUA_TBOOLEAN:
      return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        return json_integer((json_int_t)lua_tointeger(L, idx));
      if (!isfinite(lua_tonumber(L, idx))) {
        snprintf(err, errlen, "cannot encode NaN or infinity as JSON");
        return NULL;
      }
      return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      json_t *j = json_stringn(s, len);
      if (!j) snprintf(err, errlen, "cannot encode a string that is not UTF-8");
      return j;
    }
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) return json_null();
      break;
    case LUA_TTABLE: {
      if (depth >= LUA_JSON_MAX_DEPTH) {
        snprintf(err, errlen,
                 "cannot encode a table nested this deep (or "
                 "holding itself)");
        return NULL;
      }
      luaL_checkstack(L, 4, "JSON nested too deeply");
      lua_Integer n = array_length(L, idx);
      if (n > 0) {
        json_t *arr = json_array();
        for (lua_Integer i = 1; i <= n; i++) {
          lua_rawgeti(L, idx, i);
          json_t *item = to(L, -1, depth + 1, err, errlen);
          lua_pop(L, 1);
          if (!item) {
            json_decref(arr);
            return NULL;
          }
          json_array_append_new(arr, item);
        }
        return arr;
      }
      json_t *obj = json_object();
      lua_pushnil(L);
      while (lua_next(L, idx)) { /* [key, value] */
        char keybuf[32];
        const char *key;
        size_t key_len;
        int bad = table_key(L, keybuf, &key, &key_len, err, errlen);
        if (bad == 0 && json_object_getn(obj, key, key_len)) {
          clash(key, err, errlen);
          bad = RESTOCK_EINVAL;
        }
        if (bad) {
          lua_pop(L, 2);
          json_decref(obj);
          return NULL;
        }
        json_t *item = to(L, -1, depth + 1, err, errlen);
        lua_pop(L, 1); /* [key] */
        if (!item) {
          lua_pop(L, 1);
          json_decref(obj);
          return NULL;
        }
        if (json_object_setn_new(obj, key, key_len, item) != 0) {
          snprintf(err, errlen, "cannot encode a key that is not UTF-8");
          lua_pop(L, 1);
          json_decref(obj);
          return NULL;
        }
      }
      return obj;
    }
  }
  snprintf(err, errlen, "cannot encode a value of type %s as JSON",
           luaL_typename(L, idx));
  return NULL;
}

json_t *lua_json_to(lua_State *L, int idx, char *err, size_t errlen) {
  return to(L, idx, 0, err, errlen);
}

/* The text of the value at `idx`, written straight into `b`: the same
 * rules and bytes as json_text(lua_json_to(...)), without a jansson tree
 * in between (building it and freeing it was most of the cost of
 * encoding a large table: a SendGrid request of 1,000 recipients). */
static int text(lua_State *L, int idx, Buf *b, int depth, char *err,
                size_t errlen) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      buf_append(b, "null", 4);
      return 0;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx))
        buf_append(b, "true", 4);
      else
        buf_append(b, "false", 5);
      return 0;
    case LUA_TNUMBER: {
      if (lua_isinteger(L, idx)) {
        char num[24];
        int n =
            snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
        buf_append(b, num, (size_t)n);
        return 0;
      }
      if (!isfinite(lua_tonumber(L, idx))) {
        snprintf(err, errlen, "cannot encode NaN or infinity as JSON");
        return RESTOCK_EINVAL;
      }
      /* jansson's formatting of a real, as lua_json_to's tree had it. */
      json_t *real = json_real(lua_tonumber(L, idx));
      int rc = real ? json_text_append(b, real) : RESTOCK_EINVAL;
      json_decref(real);
      return rc;
    }
    case LUA_TSTRING: {
      size_t len;
      const char *str = lua_tolstring(L, idx, &len);
      if (!utf8_valid((const unsigned char *)str, len)) {
        snprintf(err, errlen, "cannot encode a string that is not UTF-8");
        return RESTOCK_EINVAL;
      }
      json_text_string(b, str, len);
      return 0;
    }
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) != NULL) break;
      buf_append(b, "null", 4);
      return 0;
    case LUA_TTABLE: {
      if (depth >= LUA_JSON_MAX_DEPTH) {
        snprintf(err, errlen,
                 "cannot encode a table nested this deep (or "
                 "holding itself)");
        return RESTOCK_EINVAL;
      }
      luaL_checkstack(L, 4, "JSON nested too deeply");
      lua_Integer n = array_length(L, idx);
      if (n > 0) {
        buf_append(b, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
          if (i > 1) buf_append(b, ",", 1);
          lua_rawgeti(L, idx, i);
          int rc = text(L, -1, b, depth + 1, err, errlen);
          lua_pop(L, 1);
          if (rc) return rc;
        }
        buf_append(b, "]", 1);
        return 0;
      }
      buf_append(b, "{", 1);
      bool first = true;
      lua_pushnil(L);
      while (lua_next(L, idx)) { /* [key, value] */
        char keybuf[32];
        const char *key;
        size_t key_len;
        if (table_key(L, keybuf, &key, &key_len, err, errlen)) {
          lua_pop(L, 2);
          return RESTOCK_EINVAL;
        }
        bool key_ok = true;
        if (lua_type(L, -2) == LUA_TSTRING) {
          key_ok = utf8_valid((const unsigned char *)key, key_len);
        } else {
          /* Its decimal string beside it in the table: the clash that
           * lua_json_to meets in its tree. */
          lua_pushlstring(L, key, key_len);
          bool twice = lua_rawget(L, idx) != LUA_TNIL;
          lua_pop(L, 1);
          if (twice) {
            clash(key, err, errlen);
            lua_pop(L, 2);
            return RESTOCK_EINVAL;
          }
        }
        if (!first) buf_append(b, ",", 1);
        first = false;
        json_text_string(b, key, key_len);
        buf_append(b, ":", 1);
        int rc = text(L, -1, b, depth + 1, err, errlen);
        lua_pop(L, 1); /* [key] */
        /* The key's own check comes after its value's, as in lua_json_to
         * (where jansson checks it on setting the value): the same value
         * is refused with the same sentence. */
        if (rc == 0 && !key_ok) {
          snprintf(err, errlen, "cannot encode a key that is not UTF-8");
          rc = RESTOCK_EINVAL;
        }
        if (rc) {
          lua_pop(L, 1);
          return rc;
        }
      }
      buf_append(b, "}", 1);
      return 0;
    }
  }
  snprintf(err, errlen, "cannot encode a value of type %s as JSON",
           luaL_typename(L, idx));
  return RESTOCK_EINVAL;
}

int lua_json_text(lua_State *L, int idx, Buf *b, char *err, size_t errlen) {
  return text(L, idx, b, 0, err, errlen);
}
