/* The Lua host: one Lua 5.4 state running the operator's plugin.lua, with the
 * `restock` module preloaded. Loading runs the script once; what it declares
 * (options, event handlers) is kept in the host. */
#ifndef RESTOCKD_LUA_HOST_H
#define RESTOCKD_LUA_HOST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The options of contract section 2, with their defaults applied. */
typedef struct {
  long long trigger_delay;
  long long inventory_required;
  long long batch_size;
  long long max_attempts;
  long long handler_timeout;
  double notify_per_unit;
  long long notify_interval;
  long long subscribe_rate_limit;
  bool trust_proxy;
  char *store_cors; /* NULL when unset */
} Options;

typedef struct LuaHost LuaHost;

/* Creates a state, preloads `restock`, and runs the script at `path`.
 * Returns 0, or -1 with a message in *err (free it) naming the script and,
 * for a bad option, the key. */
int lua_host_load(const char *path, LuaHost **out, char **err);
/* Closes the state. NULL is a no-op. */
void lua_host_free(LuaHost *h);
const Options *lua_host_options(const LuaHost *h);
/* Number of handlers the script subscribed to `event`. */
size_t lua_host_handler_count(LuaHost *h, const char *event);
/* The options as a JSON object of every option's effective value. */
json_t *options_to_json(const Options *o);

#endif
