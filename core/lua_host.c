#include "lua_host.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xmalloc.h"

struct LuaHost {
  lua_State *L;
  Options options;
  int handlers_ref; /* registry: event name -> array of {fn=, name=, ...} */
};

static const Options default_options = {
    .trigger_delay = 0,
    .inventory_required = 0,
    .batch_size = 1000,
    .max_attempts = 5,
    .handler_timeout = 30000,
    .notify_per_unit = 0,
    .notify_interval = 3600000,
    .subscribe_rate_limit = 0,
    .trust_proxy = false,
    .store_cors = NULL,
};

typedef enum { OPT_INT, OPT_NUMBER, OPT_BOOL, OPT_STRING } OptType;

/* The option table: name, type, and where it lives in Options. */
static const struct {
  const char *name;
  OptType type;
  size_t offset;
  long long min; /* for OPT_INT */
} option_specs[] = {
    {"trigger_delay", OPT_INT, offsetof(Options, trigger_delay), 0},
    {"inventory_required", OPT_INT, offsetof(Options, inventory_required), 0},
    {"batch_size", OPT_INT, offsetof(Options, batch_size), 1},
    {"max_attempts", OPT_INT, offsetof(Options, max_attempts), 1},
    {"handler_timeout", OPT_INT, offsetof(Options, handler_timeout), 1},
    {"notify_per_unit", OPT_NUMBER, offsetof(Options, notify_per_unit), 0},
    {"notify_interval", OPT_INT, offsetof(Options, notify_interval), 1},
    {"subscribe_rate_limit", OPT_INT, offsetof(Options, subscribe_rate_limit),
     0},
    {"trust_proxy", OPT_BOOL, offsetof(Options, trust_proxy), 0},
    {"store_cors", OPT_STRING, offsetof(Options, store_cors), 0},
};
#define NOPTIONS (sizeof option_specs / sizeof option_specs[0])

static LuaHost *host_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* restock.options(t): validates each key of t and stores it. Raises an error
 * naming the key on an unknown key, a wrong type or a negative number. */
static int l_options(lua_State *L) {
  LuaHost *h = host_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L); /* [t, nil] */
  while (lua_next(L, 1)) { /* [t, key, value] */
    if (lua_type(L, -2) != LUA_TSTRING)
      return luaL_error(L, "restock.options: option names must be strings");
    const char *key = lua_tostring(L, -2);
    size_t i = 0;
    while (i < NOPTIONS && strcmp(option_specs[i].name, key) != 0) i++;
    if (i == NOPTIONS)
      return luaL_error(L, "restock.options: unknown option '%s'", key);
    char *field = (char *)&h->options + option_specs[i].offset;
    switch (option_specs[i].type) {
      case OPT_INT: {
        int isint = 0;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (lua_type(L, -1) != LUA_TNUMBER || !isint)
          return luaL_error(L, "restock.options: option '%s' must be an integer",
                            key);
        if (v < option_specs[i].min)
          return luaL_error(L, "restock.options: option '%s' must be %s", key,
                            option_specs[i].min ? "at least 1"
                                                : "zero or more (not negative)");
        *(long long *)field = (long long)v;
        break;
      }
      case OPT_NUMBER: {
        if (lua_type(L, -1) != LUA_TNUMBER)
          return luaL_error(L, "restock.options: option '%s' must be a number",
                            key);
        double v = lua_tonumber(L, -1);
        if (!(v >= 0) || isinf(v))
          return luaL_error(
              L, "restock.options: option '%s' must be zero or more (not negative)",
              key);
        *(double *)field = v;
        break;
      }
      case OPT_BOOL:
        if (lua_type(L, -1) != LUA_TBOOLEAN)
          return luaL_error(L, "restock.options: option '%s' must be a boolean",
                            key);
        *(bool *)field = lua_toboolean(L, -1);
        break;
      case OPT_STRING:
        if (lua_type(L, -1) != LUA_TSTRING)
          return luaL_error(L, "restock.options: option '%s' must be a string",
                            key);
        free(*(char **)field);
        *(char **)field = xstrdup(lua_tostring(L, -1));
        break;
    }
    lua_pop(L, 1); /* [t, key] */
  }
  return 0;
}

/* restock.subscribe(event, fn [, {name=, max_attempts=}]) */
static int l_subscribe(lua_State *L) {
  LuaHost *h = host_of(L);
  const char *event = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  const char *name = NULL;
  lua_Integer max_attempts = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    if (lua_getfield(L, 3, "name") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_argerror(L, 3, "name must be a string");
      name = lua_tostring(L, -1);
    }
    if (lua_getfield(L, 3, "max_attempts") != LUA_TNIL) {
      int isint = 0;
      max_attempts = lua_tointegerx(L, -1, &isint);
      if (!isint || max_attempts < 1)
        return luaL_argerror(L, 3, "max_attempts must be a positive integer");
    }
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref); /* [.., handlers] */
  if (lua_getfield(L, -1, event) == LUA_TNIL) {      /* [.., handlers, list] */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, event);
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1) + 1;
  lua_createtable(L, 0, 3); /* [.., handlers, list, entry] */
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "fn");
  if (name)
    lua_pushstring(L, name);
  else
    lua_pushfstring(L, "%s#%d", event, (int)n);
  lua_setfield(L, -2, "name");
  if (max_attempts > 0) {
    lua_pushinteger(L, max_attempts);
    lua_setfield(L, -2, "max_attempts");
  }
  lua_rawseti(L, -2, n);
  return 0;
}

/* restock.log.info/warn/error(fmt, ...): string.format, then one log line. */
static int log_at(lua_State *L, LogLevel level) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(2)); /* string.format */
  lua_insert(L, 1);
  lua_call(L, n, 1);
  log_msg(level, "%s", lua_tostring(L, -1));
  return 0;
}
static int l_log_info(lua_State *L) { return log_at(L, LOG_INFO); }
static int l_log_warn(lua_State *L) { return log_at(L, LOG_WARN); }
static int l_log_error(lua_State *L) { return log_at(L, LOG_ERROR); }

/* The loader of `require "restock"`: builds the module table. */
static int open_restock(lua_State *L) {
  LuaHost *h = lua_touserdata(L, lua_upvalueindex(1));
  lua_newtable(L); /* [restock] */
  static const luaL_Reg top[] = {
      {"options", l_options}, {"subscribe", l_subscribe}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, top, 1);

  lua_newtable(L); /* [restock, log] */
  static const luaL_Reg log_fns[] = {{"info", l_log_info},
                                     {"warn", l_log_warn},
                                     {"error", l_log_error},
                                     {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
  lua_getfield(L, -1, "format"); /* [restock, log, h, string, format] */
  lua_remove(L, -2);
  luaL_setfuncs(L, log_fns, 2);
  lua_setfield(L, -2, "log");
  return 1;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int lua_host_load(const char *path, LuaHost **out, char **err) {
  LuaHost *h = xcalloc(1, sizeof *h);
  h->options = default_options;
  lua_State *L = luaL_newstate();
  if (!L) {
    free(h);
    *err = xstrdup("cannot create a Lua state");
    return -1;
  }
  h->L = L;
  luaL_openlibs(L);
  lua_newtable(L);
  h->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE); /* [preload] */
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, open_restock, 1);
  lua_setfield(L, -2, "restock");
  lua_pop(L, 1);

  lua_pushcfunction(L, traceback); /* [tb] */
  int rc = luaL_loadfilex(L, path, "t");
  if (rc == LUA_OK) rc = lua_pcall(L, 0, 0, -2);
  if (rc != LUA_OK) {
    *err = xasprintf("%s", lua_tostring(L, -1));
    lua_host_free(h);
    return -1;
  }
  lua_pop(L, 1);
  *out = h;
  return 0;
}

void lua_host_free(LuaHost *h) {
  if (!h) return;
  if (h->L) lua_close(h->L);
  free(h->options.store_cors);
  free(h);
}

const Options *lua_host_options(const LuaHost *h) { return &h->options; }

size_t lua_host_handler_count(LuaHost *h, const char *event) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref);
  lua_getfield(L, -1, event);
  size_t n = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
  lua_pop(L, 2);
  return n;
}

json_t *options_to_json(const Options *o) {
  return json_pack(
      "{s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:b, s:o}", "trigger_delay",
      (json_int_t)o->trigger_delay, "inventory_required",
      (json_int_t)o->inventory_required, "batch_size",
      (json_int_t)o->batch_size, "max_attempts", (json_int_t)o->max_attempts,
      "handler_timeout", (json_int_t)o->handler_timeout, "notify_per_unit",
      o->notify_per_unit, "notify_interval", (json_int_t)o->notify_interval,
      "subscribe_rate_limit", (json_int_t)o->subscribe_rate_limit,
      "trust_proxy", o->trust_proxy, "store_cors",
      o->store_cors ? json_string(o->store_cors) : json_null());
}
