/* Conversions between Lua values and JSON (jansson), for restock.json and
 * for the event data handed to handlers. */
#ifndef RESTOCKD_LUA_JSON_H
#define RESTOCKD_LUA_JSON_H

#include <jansson.h>
#include <lua.h>
#include <stddef.h>

#include "buf.h"

/* Deepest nesting converted either way. */
#define LUA_JSON_MAX_DEPTH 64

/* Pushes `v` as a Lua value: objects and arrays become tables, null becomes
 * the light userdata NULL (restock.json.null). Returns 0, or RESTOCK_EINVAL
 * (pushing nothing) if the value is nested deeper than LUA_JSON_MAX_DEPTH. */
int lua_json_push(lua_State *L, const json_t *v);
/* Pushes the value of the JSON text `text` (`len` bytes) as lua_json_push
 * pushes a parsed one, straight from the text (yajl's callbacks) instead
 * of through a jansson tree: for the event data handed to a handler, where
 * parsing a restocked event of 1,000 subscribers into jansson and freeing
 * it again took 6 ms on the loop, and this takes 1.3 ms. Returns 0, or,
 * pushing nothing, RESTOCK_EINVAL for text that is not one JSON value and
 * RESTOCK_ERANGE for one nested deeper than LUA_JSON_MAX_DEPTH. */
int lua_json_push_text(lua_State *L, const char *text, size_t len);
/* Converts the Lua value at `idx`. A table whose keys are exactly 1..n (n >
 * 0) becomes an array, any other table an object (integer keys turned into
 * strings). Returns a new reference, or NULL with a sentence in `err` for a
 * value JSON cannot hold (a function, NaN, a string that is not UTF-8, a
 * cycle or too deep a nesting, a table with both an integer key and the
 * same number as a string key, which would give one JSON key twice). */
json_t *lua_json_to(lua_State *L, int idx, char *err, size_t errlen);
/* Appends the JSON text of the value at `idx` to `b`, by the rules of
 * lua_json_to, and the same bytes as json_text of what it returns. Returns
 * 0, or RESTOCK_EINVAL with one of the same sentences (b is then partial;
 * a value with two faults may be refused for the other one). */
int lua_json_text(lua_State *L, int idx, Buf *b, char *err, size_t errlen);

#endif
