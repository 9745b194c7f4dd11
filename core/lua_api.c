/* The `restock` Lua module: what plugin.lua and its handlers can call. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http_client.h"
#include "inventory.h"
#include "json_text.h"
#include "log.h"
#include "lua_connect.h"
#include "lua_host.h"
#include "lua_json.h"
#include "lua_mail.h"
#include "outbox.h"
#include "stock.h"
#include "watchdog.h"
#include "xmalloc.h"

static LuaHost *host_of(lua_State *L) { return lua_host_of(L); }

/* ---- restock.options ---------------------------------------------------- */

/* restock.options(t): checks each key of t against the option table
 * (config.c) and sets it. Raises an error naming the key on an unknown key,
 * a wrong type or a value out of bounds. */
static int l_options(lua_State *L) {
  Options *o = &lua_host_config_mut(host_of(L))->options;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L);          /* [t, nil] */
  while (lua_next(L, 1)) { /* [t, key, value] */
    if (lua_type(L, -2) != LUA_TSTRING)
      return luaL_error(L, "restock.options: option names must be strings");
    const char *key = lua_tostring(L, -2);
    const OptionSpec *spec = config_find(key);
    if (!spec)
      return luaL_error(L, "restock.options: unknown option '%s'", key);
    OptionValue v = {.type = OV_OTHER};
    switch (lua_type(L, -1)) {
      case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) {
          v.type = OV_INT;
          v.i = (long long)lua_tointeger(L, -1);
          v.d = (double)v.i;
        } else {
          v.type = OV_NUMBER;
          v.d = lua_tonumber(L, -1);
          /* 3.0 is an integer as far as an integer option goes. */
          lua_Integer i;
          if (lua_numbertointeger(v.d, &i) && (double)i == v.d &&
              spec->type == OPT_INT) {
            v.type = OV_INT;
            v.i = (long long)i;
          }
        }
        break;
      case LUA_TBOOLEAN:
        v.type = OV_BOOL;
        v.b = lua_toboolean(L, -1);
        break;
      case LUA_TSTRING:
        v.type = OV_STRING;
        v.s = lua_tolstring(L, -1, &v.len);
        break;
    }
    char err[256];
    if (config_apply(o, spec, &v, err, sizeof err))
      return luaL_error(L, "restock.options: %s", err);
    lua_pop(L, 1); /* [t, key] */
  }
  return 0;
}

/* ---- restock.subscribe -------------------------------------------------- */

/* restock.subscribe(event, fn [, {name=, max_attempts=, each=}]) */
/* restock.on_subscribe(fn): the hook asked before a subscription is
 * stored (contract section 3). */
static int l_on_subscribe(lua_State *L) {
  LuaHost *h = host_of(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (lua_host_loaded(h))
    return luaL_error(L,
                      "restock.on_subscribe can only be called while "
                      "plugin.lua loads");
  lua_settop(L, 1);
  if (lua_host_set_subscribe_hook(h, L))
    return luaL_error(L,
                      "restock.on_subscribe was called twice: a plugin has "
                      "at most one hook (check both in one function)");
  lua_host_config_mut(h)->on_subscribe = true;
  return 0;
}

static int l_subscribe(lua_State *L) {
  LuaHost *h = host_of(L);
  const char *event = luaL_checkstring(L, 1);
  luaL_argcheck(L, lua_rawlen(L, 1) > 0 && lua_rawlen(L, 1) <= 200, 1,
                "event names are 1 to 200 bytes");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (lua_host_loaded(h))
    return luaL_error(L,
                      "restock.subscribe can only be called while plugin.lua "
                      "loads");
  const char *name = NULL;
  lua_Integer max_attempts = 0;
  HandlerEach each = EACH_EVENT;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    /* An unknown key is a mistake (a typo of name, say) whose handler would
     * run with defaults the script did not mean: refuse it. */
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      if (strcmp(k, "name") && strcmp(k, "max_attempts") && strcmp(k, "each"))
        return luaL_error(
            L,
            "restock.subscribe: unknown option '%s' (the "
            "options are name, max_attempts and each)",
            lua_type(L, -2) == LUA_TSTRING ? k : "(not a string)");
      lua_pop(L, 1);
    }
    if (lua_getfield(L, 3, "name") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0 ||
          lua_rawlen(L, -1) > 200)
        return luaL_argerror(L, 3, "name must be a string of 1 to 200 bytes");
      name = lua_tostring(L, -1);
    }
    if (lua_getfield(L, 3, "max_attempts") != LUA_TNIL) {
      int isint = 0;
      max_attempts = lua_tointegerx(L, -1, &isint);
      if (!isint || max_attempts < 1 || max_attempts > 1000)
        return luaL_argerror(L, 3,
                             "max_attempts must be an integer from 1 to 1000");
    }
    if (lua_getfield(L, 3, "each") != LUA_TNIL) {
      const char *e = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (strcmp(e, "subscriber") == 0)
        each = EACH_SUBSCRIBER;
      else if (strcmp(e, "event") != 0)
        return luaL_argerror(L, 3, "each must be \"subscriber\" or \"event\"");
    }
  }
  lua_host_push_handlers(h);                    /* [.., handlers] */
  if (lua_getfield(L, -1, event) == LUA_TNIL) { /* [.., handlers, list] */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, event);
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  if (name)
    lua_pushstring(L, name);
  else
    lua_pushfstring(L, "%s#%d", event, (int)n + 1);
  const char *final_name = lua_tostring(L, -1); /* [.., handlers, list, nm] */
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -2, i);
    lua_getfield(L, -1, "name");
    if (strcmp(lua_tostring(L, -1), final_name) == 0)
      return luaL_error(L,
                        "restock.subscribe: a handler named '%s' is already "
                        "subscribed to %s",
                        final_name, event);
    lua_pop(L, 2);
  }
  lua_createtable(L, 0, 2); /* [.., handlers, list, nm, entry] */
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "fn");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "name");
  lua_rawseti(L, -3, n + 1);
  Config *c = lua_host_config_mut(h);
  /* max_attempts 0: the option's value, read when restock.options comes
   * later in the script too (lua_api_finish_load). */
  config_add_handler(c, event, final_name, (long long)max_attempts, each);
  return 0;
}

/* ---- database calls ------------------------------------------------------ */

/* Why a database call cannot run: at load time, or in `restockd check`. The
 * message is the same in both. */
static Domain *domain_or_raise(lua_State *L, const char *what) {
  LuaHost *h = host_of(L);
  Domain *d = lua_host_env(h) ? lua_host_env(h)->d : NULL;
  if (!lua_host_loaded(h) || !d || !lua_task_current(L))
    luaL_error(L,
               "%s cannot be called while plugin.lua loads; call it from a "
               "handler",
               what);
  return d;
}

/* A handler waiting for a unit of work. If the task is aborted first, the
 * wait is disowned (task NULL) and the completion only frees it. */
typedef struct {
  LuaTask *task;
} DbWait;

static void db_cancel(void *ctx) { ((DbWait *)ctx)->task = NULL; }

static void push_store_error(lua_State *co, int status, const char *message) {
  lua_pushnil(co);
  if (message && *message)
    lua_pushstring(co, message);
  else if (status == RESTOCK_ECOMMIT || status == RESTOCK_EUNAVAIL)
    lua_pushstring(co, "the database is unavailable; the log says why");
  else
    lua_pushstring(co, "the database failed; the log says why");
}

/* ---- restock.emit ----------------------------------------------------- */

typedef struct {
  Unit unit;
  DbWait wait;
  char *name;
  json_t *data;
} EmitCall;

static int emit_fn(StoreTx *tx, void *arg) {
  EmitCall *c = arg;
  return outbox_write(tx, &c->unit, c->name, c->data, 0, NULL);
}

static void emit_done_lua(Unit *u, int status);
/* Every completion that touches a coroutine is Lua time for the watchdog:
 * pushing its results can run the collector, and so finalizers. */
static void emit_done(Unit *u, int status) {
  watchdog_enter();
  emit_done_lua(u, status);
  watchdog_leave();
}

static void emit_done_lua(Unit *u, int status) {
  EmitCall *c = (EmitCall *)u;
  LuaTask *t = c->wait.task;
  free(c->name);
  json_decref(c->data);
  free(c);
  if (!t) return;
  lua_State *co = lua_task_thread(t);
  if (status) {
    push_store_error(co, status,
                     status == RESTOCK_EINVAL
                         ? "the event's data cannot be stored as JSON"
                         : "the event could not be stored; the log says why");
    lua_task_resume(t, 2);
  } else {
    lua_pushboolean(co, 1);
    lua_task_resume(t, 1);
  }
}

/* restock.emit(event, data): true once the event is stored, or nil and a
 * message. Suspends only the calling handler. */
static int l_emit(lua_State *L) {
  Domain *d = domain_or_raise(L, "restock.emit");
  const char *event = luaL_checkstring(L, 1);
  luaL_argcheck(L, lua_rawlen(L, 1) > 0 && lua_rawlen(L, 1) <= 200, 1,
                "event names are 1 to 200 bytes");
  char err[128] = "";
  json_t *data = lua_isnoneornil(L, 2) ? json_object()
                                       : lua_json_to(L, 2, err, sizeof err);
  if (!data) return luaL_argerror(L, 2, err);
  EmitCall *c = xcalloc(1, sizeof *c);
  c->wait.task = lua_task_current(L);
  c->name = xstrdup(event);
  c->data = data;
  unit_write(d, &c->unit, emit_fn, emit_done);
  lua_task_wait(c->wait.task, db_cancel, &c->wait);
  return lua_yield(L, 0);
}

/* ---- restock.variants --------------------------------------------------- */

static void set_string(lua_State *L, const char *key, const char *value) {
  if (!value) return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

/* Pushes a variant as a table. */
static void push_variant(lua_State *L, const Variant *v) {
  lua_createtable(L, 0, 10);
  set_string(L, "id", v->id);
  set_string(L, "product_id", v->product_id);
  set_string(L, "sku", v->sku);
  set_string(L, "title", v->title);
  lua_pushinteger(L, v->inventory_quantity);
  lua_setfield(L, -2, "inventory_quantity");
  lua_pushinteger(L, stock_quantity(v));
  lua_setfield(L, -2, "quantity");
  lua_pushboolean(L, v->allow_backorder);
  lua_setfield(L, -2, "allow_backorder");
  lua_pushboolean(L, v->manage_inventory);
  lua_setfield(L, -2, "manage_inventory");
  set_string(L, "created_at", v->created_at);
  set_string(L, "updated_at", v->updated_at);
}

typedef struct {
  ReadCall call;
  DbWait wait;
  char id[256];
  Variant v;
} RetrieveCall;

static int retrieve_fn(StoreTx *tx, ReadCall *c) {
  RetrieveCall *r = (RetrieveCall *)c;
  return store_variant_get(tx, r->id, &r->v);
}

static void retrieve_done_lua(ReadCall *c, int status);
static void retrieve_done(ReadCall *c, int status) {
  watchdog_enter();
  retrieve_done_lua(c, status);
  watchdog_leave();
}

static void retrieve_done_lua(ReadCall *c, int status) {
  RetrieveCall *r = (RetrieveCall *)c;
  LuaTask *t = r->wait.task;
  if (t) {
    lua_State *co = lua_task_thread(t);
    if (status == 0) {
      push_variant(co, &r->v);
      variant_clear(&r->v);
      free(r);
      lua_task_resume(t, 1);
      return;
    }
    char msg[300];
    snprintf(msg, sizeof msg, "Variant with id: %s was not found", r->id);
    push_store_error(co, status, status == RESTOCK_ENOTFOUND ? msg : NULL);
    variant_clear(&r->v);
    free(r);
    lua_task_resume(t, 2);
    return;
  }
  variant_clear(&r->v);
  free(r);
}

/* restock.variants.retrieve(id): the variant as a table, or nil and a
 * message. Suspends only the calling handler while the store reads. */
static int l_variant_retrieve(lua_State *L) {
  Domain *d = domain_or_raise(L, "restock.variants.retrieve");
  size_t len = 0;
  const char *id = luaL_checklstring(L, 1, &len);
  if (len == 0 || len > DOMAIN_MAX_ID || !domain_valid_id(id)) {
    lua_pushnil(L);
    lua_pushfstring(L, "Variant with id: %s was not found", id);
    return 2;
  }
  RetrieveCall *r = xcalloc(1, sizeof *r);
  r->wait.task = lua_task_current(L);
  snprintf(r->id, sizeof r->id, "%s", id);
  r->call.fn = retrieve_fn;
  r->call.done = retrieve_done;
  domain_read(d, &r->call);
  lua_task_wait(r->wait.task, db_cancel, &r->wait);
  return lua_yield(L, 0);
}

/* ---- restock.json ------------------------------------------------------- */

static int l_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  char err[128] = "";
  Buf b = {0};
  if (lua_json_text(L, 1, &b, err, sizeof err)) {
    buf_free(&b);
    return luaL_argerror(L, 1, err);
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  buf_free(&b);
  return 1;
}

static int l_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  json_error_t err;
  json_t *j = json_loadb(s, len, JSON_DECODE_ANY, &err);
  if (!j) {
    lua_pushnil(L);
    lua_pushfstring(L, "invalid JSON: %s (at byte %d)", err.text, err.position);
    return 2;
  }
  int rc = lua_json_push(L, j);
  json_decref(j);
  if (rc) {
    lua_pushnil(L);
    lua_pushstring(L, "invalid JSON: nested too deeply");
    return 2;
  }
  return 1;
}

/* ---- restock.log -------------------------------------------------------- */

/* restock.log.info/warn/error(fmt, ...): string.format, then one log line. */
static int log_at(lua_State *L, LogLevel level) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1)); /* string.format */
  lua_insert(L, 1);
  lua_call(L, n, 1);
  log_msg(level, "%s", lua_tostring(L, -1));
  return 0;
}
static int l_log_info(lua_State *L) { return log_at(L, LOG_INFO); }
static int l_log_warn(lua_State *L) { return log_at(L, LOG_WARN); }
static int l_log_error(lua_State *L) { return log_at(L, LOG_ERROR); }

/* ---- restock.sleep ------------------------------------------------------ */

typedef struct {
  uv_timer_t timer;
  LuaTask *task;
} Sleep;

static void sleep_free(uv_handle_t *h) { free(h->data); }

static void on_wake(uv_timer_t *timer) {
  Sleep *s = timer->data;
  LuaTask *t = s->task;
  uv_close((uv_handle_t *)&s->timer, sleep_free);
  watchdog_enter();
  lua_task_resume(t, 0);
  watchdog_leave();
}

static void sleep_cancel(void *ctx) {
  Sleep *s = ctx;
  uv_close((uv_handle_t *)&s->timer, sleep_free);
}

/* restock.sleep(ms): suspends this handler; the server runs on. */
static int l_sleep(lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_argcheck(L, ms >= 0, 1, "must not be negative");
  LuaTask *t = lua_task_current(L);
  if (!t)
    return luaL_error(L,
                      "restock.sleep can only be called by an event handler "
                      "(not at load time, nor inside a coroutine of its own)");
  Sleep *s = xcalloc(1, sizeof *s);
  s->task = t;
  uv_timer_init(lua_task_loop(t), &s->timer);
  s->timer.data = s;
  uv_timer_start(&s->timer, on_wake, (uint64_t)ms, 0);
  lua_task_wait(t, sleep_cancel, s);
  return lua_yield(L, 0);
}

/* ---- restock.http ------------------------------------------------------- */

/* Most request headers a handler may set. */
#define MAX_REQUEST_HEADERS 100

typedef struct {
  LuaTask *task;
  HttpClientRequest *req;
  int body_ref; /* the body string, anchored while curl reads it */
} HttpWait;

static void http_wait_free(HttpWait *w) {
  lua_host_unref(lua_task_thread(w->task), w->body_ref);
  free(w);
}

static void http_cancel(void *ctx) {
  HttpWait *w = ctx;
  http_client_cancel(w->req);
  http_wait_free(w);
}

/* Resumes the handler with {status=, headers=, body=}, or nil and the
 * error. */
static void http_done_lua(void *arg, const HttpClientResponse *res,
                          const char *err);
static void http_done(void *arg, const HttpClientResponse *res,
                      const char *err) {
  watchdog_enter();
  http_done_lua(arg, res, err);
  watchdog_leave();
}

static void http_done_lua(void *arg, const HttpClientResponse *res,
                          const char *err) {
  HttpWait *w = arg;
  LuaTask *t = w->task;
  http_wait_free(w);
  lua_State *co = lua_task_thread(t);
  luaL_checkstack(co, 6, NULL);
  if (!res) {
    lua_pushnil(co);
    lua_pushstring(co, err);
    lua_task_resume(t, 2);
    return;
  }
  lua_createtable(co, 0, 3); /* [res] */
  lua_pushinteger(co, res->status);
  lua_setfield(co, -2, "status");
  lua_createtable(co, 0, (int)res->nheaders); /* [res, headers] */
  for (size_t i = 0; i < res->nheaders; i++) {
    /* A repeated header's values are joined with ", ", as RFC 9110 allows
     * for all but Set-Cookie. */
    if (lua_getfield(co, -1, res->header_names[i]) == LUA_TSTRING) {
      lua_pushstring(co, ", ");
      lua_pushstring(co, res->header_values[i]);
      lua_concat(co, 3);
    } else {
      lua_pop(co, 1);
      lua_pushstring(co, res->header_values[i]);
    }
    lua_setfield(co, -2, res->header_names[i]);
  }
  lua_setfield(co, -2, "headers");
  lua_pushlstring(co, res->body, res->body_len);
  lua_setfield(co, -2, "body");
  lua_task_resume(t, 1);
}

/* True when `s` may go in a header line: no CR, LF or NUL. */
static bool header_safe(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return false;
  return true;
}

/* restock.http.request{method=, url=, headers=, body=, timeout=}: suspends
 * the handler until the answer; {status=, headers=, body=} or nil, err. */
static int l_http_request(lua_State *L) {
  LuaTask *t = lua_task_current(L);
  if (!t)
    return luaL_error(L,
                      "restock.http.request can only be called by an event "
                      "handler (not at load time, nor inside a coroutine of "
                      "its own)");
  LuaEnv *env = lua_host_env(host_of(L));
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!env->http) {
    /* Made on first use: a server whose handlers never call out does not
     * pay for libcurl and its TLS library at start. */
    env->http = http_client_new(lua_task_loop(t), env->ca_file);
    if (!env->http) {
      lua_pushnil(L);
      lua_pushstring(L, "libcurl could not be initialized");
      return 2;
    }
  }
  HttpClientOptions o;
  memset(&o, 0, sizeof o);
  if (lua_getfield(L, 1, "url") != LUA_TSTRING)
    return luaL_argerror(L, 1, "url (a string) is required");
  o.url = lua_tostring(L, -1);
  if (lua_getfield(L, 1, "body") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_argerror(L, 1, "body must be a string");
    o.body = lua_tolstring(L, -1, &o.body_len);
  }
  if (lua_getfield(L, 1, "method") != LUA_TNIL) {
    size_t len = 0;
    const char *m = lua_tolstring(L, -1, &len);
    if (lua_type(L, -1) != LUA_TSTRING || len == 0 || len > 16 ||
        strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != len)
      return luaL_argerror(L, 1, "method must be an upper-case HTTP method");
    o.method = m;
  } else {
    o.method = o.body ? "POST" : "GET";
  }
  if (lua_getfield(L, 1, "timeout") != LUA_TNIL) {
    int isint = 0;
    lua_Integer ms = lua_tointegerx(L, -1, &isint);
    if (!isint || ms <= 0)
      return luaL_argerror(L, 1, "timeout must be a positive integer (ms)");
    o.timeout_ms =
        (long)(ms < HTTP_CLIENT_MAX_TIMEOUT_MS ? ms
                                               : HTTP_CLIENT_MAX_TIMEOUT_MS);
  }
  char *lines[MAX_REQUEST_HEADERS];
  size_t n = 0;
  if (lua_getfield(L, 1, "headers") != LUA_TNIL) { /* [.., headers] */
    if (!lua_istable(L, -1))
      return luaL_argerror(L, 1, "headers must be a table of name = value");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      size_t nl = 0, vl = 0;
      const char *name =
          lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nl) : NULL;
      const char *value =
          lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
              ? lua_tolstring(L, -1, &vl)
              : NULL;
      if (!name || !value || nl == 0 || !header_safe(name, nl) ||
          !header_safe(value, vl) || memchr(name, ':', nl) ||
          n == MAX_REQUEST_HEADERS) {
        for (size_t i = 0; i < n; i++) free(lines[i]);
        return luaL_argerror(L, 1,
                             "headers must map names to string values, "
                             "without line breaks, at most 100");
      }
      lines[n++] = xasprintf("%s: %s", name, value);
      lua_pop(L, 1);
    }
  }
  o.headers = (const char *const *)lines;
  o.nheaders = n;
  HttpWait *w = xcalloc(1, sizeof *w);
  w->task = t;
  w->body_ref = LUA_NOREF;
  if (o.body) {
    /* curl reads the Lua string itself, no copy: a reference keeps it. */
    lua_getfield(L, 1, "body");
    w->body_ref = lua_host_ref(L);
    o.body_borrowed = true;
  }
  char err[256];
  w->req = http_client_request(env->http, &o, http_done, w, err, sizeof err);
  for (size_t i = 0; i < n; i++) free(lines[i]);
  if (!w->req) {
    http_wait_free(w);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_task_wait(t, http_cancel, w);
  return lua_yield(L, 0);
}

/* ---- the module --------------------------------------------------------- */

int lua_api_open(lua_State *L) {
  static const luaL_Reg top[] = {{"options", l_options},
                                 {"subscribe", l_subscribe},
                                 {"on_subscribe", l_on_subscribe},
                                 {"emit", l_emit},
                                 {"sleep", l_sleep},
                                 {NULL, NULL}};
  static const luaL_Reg variants[] = {{"retrieve", l_variant_retrieve},
                                      {NULL, NULL}};
  static const luaL_Reg http[] = {{"request", l_http_request}, {NULL, NULL}};
  static const luaL_Reg json[] = {
      {"encode", l_json_encode}, {"decode", l_json_decode}, {NULL, NULL}};
  static const luaL_Reg log_fns[] = {{"info", l_log_info},
                                     {"warn", l_log_warn},
                                     {"error", l_log_error},
                                     {NULL, NULL}};
  luaL_newlib(L, top); /* [restock] */
  luaL_newlib(L, variants);
  lua_setfield(L, -2, "variants");
  lua_connect_open(L);
  luaL_newlib(L, http);
  lua_setfield(L, -2, "http");
  lua_crypto_open(L);
  luaL_newlib(L, json); /* [restock, json] */
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_setfield(L, -2, "json");
  lua_newtable(L); /* [restock, log] */
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
  lua_getfield(L, -1, "format"); /* [restock, log, string, format] */
  lua_remove(L, -2);
  luaL_setfuncs(L, log_fns, 1);
  lua_setfield(L, -2, "log");
  lua_mail_open(L); /* restock.smtp, restock.url */
  return 1;
}
